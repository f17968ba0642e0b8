"""A fast word tagger distilled from Baidu LAC: segmentation + LAC's word labels (PER/LOC/ORG/TIME, n, v …).

The entity extractor needs LAC's words (serving/ner.py: a BiGRU-CRF on onnxruntime, ~1 MFLOP per
character, three quarters of the extraction time). `WordTagger` reproduces them with a linear-chain
CRF over hashed character features — the characters around, their bigrams/trigrams, character types,
and the rjieba word each character belongs to (word identity and position, from the project's
segmenter) — trained with python-crfsuite on LAC's own output for the written corpus TRAIN texts
(`python -m training.words`), decoded per clause chunk by the compiled Viterbi (triage/viterbi.py). numpy at
serve time; the weights are one `.npz` (models/entities/word_tagger.npz). Same interface as `LacTagger`:
`words(text)` and `tag(text)`.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from triage.orgs import _MUL_INT, _SEED_INT
from triage.viterbi import NEG, kernel, viterbi_spans

WORD_TAGGER_PATH = Path(__file__).resolve().parent.parent / "models/entities/word_tagger.npz"
_NER_TAGS = ("PER", "LOC", "ORG", "TIME")
# Words never cross these (LAC tags them as single-character `w` words in practice): chunks run between them.
_BREAK_CHARS = "。！？；!?;\n，,、：:（）()“”\"《》 \t"
_BREAK_CLASS = re.escape("".join(sorted(set(_BREAK_CHARS))))
_CHUNK = re.compile(f"[^{_BREAK_CLASS}]+|[{_BREAK_CLASS}]")


def tag_names(labels: Sequence[str]) -> list[str]:
    """Tags in weight-column order: LABEL-B, LABEL-I per label."""
    return [f"{lab}-{p}" for lab in labels for p in ("B", "I")]


def allowed_transitions(labels: Sequence[str]) -> npt.NDArray[np.bool_]:
    """X-I may only follow X-B or X-I; any B may follow anything."""
    n = 2 * len(labels)
    ok = np.ones((n, n), dtype=bool)
    for j in range(len(labels)):
        ok[:, 2 * j + 1] = False
        ok[2 * j, 2 * j + 1] = ok[2 * j + 1, 2 * j + 1] = True
    return ok


def _segmenter_words(text: str) -> list[tuple[int, int]]:
    """(start, end) of the project segmenter's words (whitespace dropped)."""
    from triage.text import default_segmenter

    seg = default_segmenter()
    if seg.engine == "rjieba":  # offsets straight from rjieba (same words as `cut`)
        return [(s, e) for w, s, e in seg._rj.tokenize(text, "default", True) if w.strip()]
    out, pos = [], 0
    for w in seg.cut(text):
        i = text.find(w, pos)
        if i < 0:
            continue
        out.append((i, i + len(w)))
        pos = i + len(w)
    return out


def features(text: str, mask: int) -> npt.NDArray[np.int64]:
    """(len(text), n_templates) hashed feature ids."""
    n = len(text)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    digit = (cp >= 48) & (cp <= 57)
    cp = np.where(digit, np.uint64(48), cp)
    ctype = np.where(digit, 1, np.where(cp < 128, 2, np.where((cp >= 0x4E00) & (cp <= 0x9FA5), 3, 4))).astype(np.uint64)
    pad = np.array([1, 2, 3], dtype=np.uint64)
    c = np.concatenate([pad, cp, pad + 3])  # c[i + 3] is text[i]
    ctx = [c[k:k + n] for k in range(7)]  # text[i-3] … text[i+3]
    ct_pad = np.concatenate([np.zeros(1, dtype=np.uint64), ctype, np.zeros(1, dtype=np.uint64)])
    # rjieba word per character: position (1 begin, 2 inside, 3 end, 4 single) and identity (its first/last chars + length)
    wpos = np.zeros(n, dtype=np.uint64)
    wid = np.zeros(n, dtype=np.uint64)
    wlen = np.zeros(n, dtype=np.uint64)
    seg = _segmenter_words(text)
    if seg:
        bounds = np.array(seg, dtype=np.int64)
        starts, lens = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
        owner = np.repeat(np.arange(len(seg)), lens)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.repeat(starts, lens) + offset
        last = offset == np.repeat(lens - 1, lens)
        wpos[pos] = np.where(offset == 0, np.where(last, 4, 1), np.where(last, 3, 2)).astype(np.uint64)
        wlen[pos] = np.minimum(lens, 6).astype(np.uint64)[owner]
        ids = np.array([zlib.crc32(text[a:b].encode("utf-8")) + 1 for a, b in seg], dtype=np.uint64)
        wid[pos] = ids[owner]
    templates: list[tuple[npt.NDArray[np.uint64], ...]] = [
        (np.zeros(n, dtype=np.uint64),),
        *((x,) for x in ctx[1:6]),
        (ctx[2], ctx[3]), (ctx[3], ctx[4]), (ctx[1], ctx[2]), (ctx[4], ctx[5]), (ctx[2], ctx[3], ctx[4]),
        (ctx[1], ctx[2], ctx[3]), (ctx[3], ctx[4], ctx[5]), (ctx[0],), (ctx[6],),
        (ct_pad[:-2], ctype, ct_pad[2:]),
        (wpos,), (wpos, wlen), (wpos, ctx[3]), (wid, wpos), (wid,),
    ]
    width = max(len(a) for a in templates)
    zero = np.zeros(n, dtype=np.uint64)
    atoms = np.stack([np.stack([*a, *([zero] * (width - len(a)))]) for a in templates])
    mul = np.array([[_MUL_INT] * len(a) + [1] * (width - len(a)) for a in templates], dtype=np.uint64)
    h = np.array([(_SEED_INT * (t + 101)) & 0xFFFFFFFFFFFFFFFF for t in range(len(templates))], dtype=np.uint64)[:, None]
    for k in range(width):
        h = (h ^ atoms[:, k]) * mul[:, k, None]
    return ((h ^ (h >> np.uint64(29))) & np.uint64(mask)).astype(np.int64).T


def chunks(text: str) -> list[tuple[int, int]]:
    """Runs between break characters, and every break character on its own."""
    return [m.span() for m in _CHUNK.finditer(text) if text[m.start():m.end()].strip()]


class WordTagger:
    """`words(text)` → (start, end, LAC label) for every word; `tag(text)` → PER/LOC/ORG/TIME words."""

    def __init__(self, weights: npt.NDArray[np.float32], transitions: npt.NDArray[np.float32], labels: Sequence[str],
                 bits: int, version: str) -> None:
        kernel()  # compile (or load) the Viterbi now, not at the first petition
        self.labels = list(labels)
        self.bits = bits
        self.version = version
        self.weights_ = weights
        self.transitions_ = transitions
        ok = allowed_transitions(self.labels)
        self._trans = np.where(ok, transitions, NEG).astype(np.float32)
        self._start_ok = np.array([i % 2 == 0 for i in range(2 * len(self.labels))])
        self._mask = (1 << bits) - 1

    @classmethod
    def load(cls, path: Path = WORD_TAGGER_PATH) -> WordTagger:
        """The tagger of `path` (one shared, read-only instance per path and file version in a process)."""
        st = path.stat()
        return _load(str(path), st.st_mtime_ns, st.st_size)

    @classmethod
    def read(cls, path: Path) -> WordTagger:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            labels = meta["labels"]
            weights = np.zeros((1 << int(meta["bits"]), 2 * len(labels)), dtype=np.float32)
            weights[z["rows"]] = z["values"].astype(np.float32)
            return cls(weights, z["transitions"].astype(np.float32), labels, int(meta["bits"]), str(meta["version"]))

    def save(self, path: Path, extra: dict[str, object] | None = None) -> None:
        rows = np.flatnonzero(np.any(self.weights_ != 0, axis=1)).astype(np.int32)
        meta = {"version": self.version, "bits": self.bits, "labels": self.labels, **(extra or {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, rows=rows, values=self.weights_[rows].astype(np.float16),
                                transitions=self.transitions_.astype(np.float32),
                                meta=np.array(json.dumps(meta, ensure_ascii=False)))

    def emissions(self, text: str) -> npt.NDArray[np.float32]:
        """(len, tags) summed feature weights: row gathers added template by template (≫ faster than one 3-d take)."""
        feats = features(text, self._mask)
        w = self.weights_
        em = w[feats[:, 0]]
        for j in range(1, feats.shape[1]):
            em += w[feats[:, j]]
        return em

    def words(self, text: str) -> list[tuple[int, int, str]]:
        if not text:
            return []
        spans = chunks(text)
        n = len(text)
        em = self.emissions(text)
        tags = viterbi_spans(em, spans, self._trans, self._start_ok)  # per chunk
        bounds = np.array(spans, dtype=np.int64).reshape(-1, 2)
        in_chunk = np.zeros(n + 1, dtype=np.int64)
        np.add.at(in_chunk, bounds[:, 0], 1)
        np.add.at(in_chunk, bounds[:, 1], -1)
        inside = np.cumsum(in_chunk)[:n] > 0
        is_start = inside & (tags % 2 == 0)
        is_start[bounds[:, 0]] = True
        brk = np.flatnonzero(is_start | ~inside)
        ends = np.append(brk[1:], n)
        keep = is_start[brk]
        starts, ends = brk[keep], ends[keep]
        labs = tags[starts] // 2
        names = self.labels
        return [(s, e, names[k]) for s, e, k in zip(starts.tolist(), ends.tolist(), labs.tolist(), strict=True)]

    def tag(self, text: str) -> list[tuple[int, int, str]]:
        return ner_spans(text, self.words(text))


def ner_spans(text: str, words: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The (start, end, tag) words tagged PER/LOC/ORG/TIME that are not blank: a word tagger's `tag()` (LAC's too)."""
    return [(s, e, t) for s, e, t in words if t in _NER_TAGS and text[s:e].strip()]


@functools.lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int, _size: int) -> WordTagger:
    return WordTagger.read(Path(path))
