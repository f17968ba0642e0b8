"""Fast word tagger (triage/words.py): Viterbi, word assembly, persistence, and the shipped model against LAC."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from triage.viterbi import viterbi_spans
from triage.words import WORD_TAGGER_PATH, WordTagger, allowed_transitions, chunks, features, tag_names

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["O", "PER", "n", "v"]


def _brute_force(em: np.ndarray, trans: np.ndarray, ok: np.ndarray) -> list[int]:
    best, best_path = -np.inf, None
    for path in itertools.product(range(em.shape[1]), repeat=len(em)):
        if path[0] % 2 or any(not ok[a, b] for a, b in itertools.pairwise(path)):
            continue
        score = sum(em[i, t] for i, t in enumerate(path)) + sum(trans[a, b] for a, b in itertools.pairwise(path))
        if score > best:
            best, best_path = score, list(path)
    assert best_path is not None
    return best_path


def test_viterbi_matches_brute_force_per_chunk() -> None:
    rng = np.random.default_rng(3)
    k = 2 * len(LABELS)
    ok = allowed_transitions(LABELS)
    trans_raw = rng.standard_normal((k, k)).astype(np.float32)
    trans = np.where(ok, trans_raw, np.float32(-1e9)).astype(np.float32)
    em = rng.standard_normal((9, k)).astype(np.float32) * 2
    spans = [(0, 4), (4, 5), (6, 9)]
    start_ok = np.array([i % 2 == 0 for i in range(k)])
    tags = viterbi_spans(em, spans, trans, start_ok)
    for s, e in spans:
        assert tags[s:e].tolist() == _brute_force(em[s:e], trans_raw, ok)


def test_inside_tags_only_continue_their_label() -> None:
    ok = allowed_transitions(LABELS)
    names = tag_names(LABELS)
    for a, b in itertools.product(range(len(names)), repeat=2):
        if names[b].endswith("-I"):
            assert ok[a, b] == (names[a][:-2] == names[b][:-2])
        else:
            assert ok[a, b]


def test_chunks_split_at_punctuation_and_skip_spaces() -> None:
    text = "张三，在渝北区 上班。"
    assert [text[s:e] for s, e in chunks(text)] == ["张三", "，", "在渝北区", "上班", "。"]


def _toy_tagger(tmp_path: Path) -> WordTagger:
    """Weights that make every character a single-character word labelled by its bias row, PER for 张."""
    bits = 10
    k = 2 * len(LABELS)
    w = np.zeros((1 << bits, k), dtype=np.float32)
    names = tag_names(LABELS)
    w[features("x", (1 << bits) - 1)[0, 0], names.index("n-B")] = 1.0  # bias template: every character
    w[features("张", (1 << bits) - 1)[0, 3], names.index("PER-B")] = 5.0  # the character itself (template 3: text[i])
    tagger = WordTagger(w, np.zeros((k, k), dtype=np.float32), LABELS, bits, "toy")
    tagger.save(tmp_path / "toy.npz")
    return WordTagger.load(tmp_path / "toy.npz")


def test_words_cover_chunks_with_offsets_and_roundtrip(tmp_path: Path) -> None:
    tagger = _toy_tagger(tmp_path)
    text = "张三去了，重庆"
    words = tagger.words(text)
    assert [(s, e) for s, e, _ in words] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]
    assert words[0][2] == "PER" and {lab for _, _, lab in words[1:]} <= {"n", "PER"}
    assert tagger.tag(text)[0] == (0, 1, "PER")
    assert tagger.words("") == []


@pytest.mark.skipif(not WORD_TAGGER_PATH.exists(), reason="models/entities/word_tagger.npz not built")
def test_shipped_tagger_agrees_with_lac_on_dev_sample() -> None:
    from serving.ner import LacTagger
    from triage.schemas import Petition

    lines = (ROOT / "data/corpus/written/dev.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    texts = [Petition.model_validate(json.loads(line)).text for line in lines if line.strip()]
    fast, lac = WordTagger.load(), LacTagger()
    ref = {(i, s, e) for i, t in enumerate(texts) for s, e, _ in lac.words(t) if t[s:e].strip()}
    hyp = {(i, s, e) for i, t in enumerate(texts) for s, e, _ in fast.words(t)}
    assert 2 * len(ref & hyp) / (len(ref) + len(hyp)) >= 0.9  # word boundaries (dev agreement is in the model card)
