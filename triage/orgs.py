"""Organisation names by a character-level sequence tagger learned from the corpus annotations.

The rules of triage/entities.py propose organisation candidates (LAC ORG words, word runs ending in an
organisation head, duty department names, suffix matches) and the gazetteer marks places; the writers'
`org` spans decide which of them are names and where they start and end (区政府 yes, 法院 no; 家美装饰
without a suffix; 12345 only as the hotline body). `OrgTagger` is a linear-chain model over BIOES tags (a CRF
fitted with python-crfsuite; an averaged structured perceptron as the alternative trainer): per character, hashed
features of the surrounding characters, the LAC word label and word, and every candidate source's position
(begin/inside/end/single); first-order transitions; Viterbi decoding per clause chunk (triage/viterbi.py). numpy
and two numba-compiled loops at serve time: the weights are one `.npz` (trained by `python -m training.orgs`, artifact
in models/entities/). The shipped tagger (orgs-6; orgs-5 before it) also reads LAC's pretrained encoder states per
character through a `StateLayer` (a logistic regression to five BIOES probabilities, weighed by the CRF); orgs-6 adds
a `SequenceLayer`, a small convolutional network over the same inputs and those states, trained with its own CRF loss
(torch, offline) and run here with numpy on the chunks that touch an organisation candidate, its scores and
transitions added to the CRF's at a weight chosen out-of-fold. `org_tagger_words.npz` (orgs-3) is the CRF without
either, for word taggers without states.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from triage.jit import lazy_njit
from triage.text import NameScanner
from triage.viterbi import NEG, kernel, viterbi_spans

TAGS = ("O", "B", "I", "E", "S")
_O, _B, _I, _E, _S = range(5)
# Allowed tag bigrams (BIOES): after B/I comes I/E, after O/E/S comes O/B/S.
_ALLOWED = np.array(
    [[p in (_O, _E, _S) and n in (_O, _B, _S) or p in (_B, _I) and n in (_I, _E) for n in range(5)] for p in range(5)]
)
_START_OK = np.array([t in (_O, _B, _S) for t in range(5)])
_END_OK = np.array([t in (_O, _E, _S) for t in range(5)])

# Candidate channels the extractor passes in (name → spans); their order is part of the feature layout.
CHANNELS = ("place", "department", "lac_org", "word_org", "suffix_org", "bare_org", "head")
# Organisation names never cross these: training and decoding run per chunk between them.
_BREAKS = frozenset("。！？；!?;\n，,、：:（）()“”\"《》 \t")
# Decoding also cuts at conjunctions no gold organisation name of written/train contains ("X局并Y委：", "X局转Y局：",
# "与顺达物流的"; 和 is in names: 住房和城乡建设委员会). Training keeps the chunks above: the shipped weights were fitted
# on them, and fitting on these cuts too scored lower on dev (0.851 vs 0.870 through the extractor).
_CONJUNCTIONS = frozenset("并转及与暨")

_CHUNK = re.compile("[^" + re.escape("".join(sorted(_BREAKS))) + "]+")
_DECODE_CHUNK = re.compile("[^" + re.escape("".join(sorted(_BREAKS | _CONJUNCTIONS))) + "]+")
_QUOTED = re.compile(r"[“\"「『][^“”\"「」『』\n]{1,20}[”\"」』]")
_MUL_INT = 0x100000001B3
_SEED_INT = 0x9E3779B97F4A7C15


class Lexicon:
    """Organisation names seen in training annotations, each with how often its occurrences were tagged (bucketed).

    `matches(text)` → (start, end, bucket) leftmost-longest; buckets 1..4 for tagged share <0.2, <0.5, <0.8, ≥0.8.
    """

    def __init__(self, names: Mapping[str, int]) -> None:
        self.names = dict(names)
        self._scanner = NameScanner(self.names)

    @staticmethod
    def bucket(share: float) -> int:
        return 1 + int(share >= 0.2) + int(share >= 0.5) + int(share >= 0.8)

    def matches(self, text: str) -> list[tuple[int, int, int]]:
        """Leftmost-longest, non-overlapping (scanning on after each match)."""
        names = self.names
        return [(s, e, names[text[s:e]]) for s, e in self._scanner.find(text)]


def _stable_id(s: str) -> int:
    return zlib.crc32(s.encode("utf-8"))


_LABEL_IDS: dict[str, int] = {}
_P = 0x100000001B3 | 1
_P_INV = pow(_P, -1, 1 << 64)


def _word_atoms(cp: npt.NDArray[np.uint64], words: Sequence[tuple[int, int, str]]) -> tuple[npt.NDArray[np.uint64], ...]:
    """Per character: word label, word identity (multi-character words), position in word, labels of the words around."""
    n = len(cp)
    lab, word, wpos, prev_lab, next_lab = (np.zeros(n, dtype=np.uint64) for _ in range(5))
    if not words or not n:
        return lab, word, wpos, prev_lab, next_lab
    bounds = np.array([(s, e) for s, e, _ in words], dtype=np.int64)
    starts, lens = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    labs = np.array([_LABEL_IDS.get(w[2]) or _LABEL_IDS.setdefault(w[2], _stable_id(w[2])) for w in words], dtype=np.uint64)
    owner = np.repeat(np.arange(len(words)), lens)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.repeat(starts, lens) + offset
    zero = np.zeros(1, dtype=np.uint64)
    lab[pos] = labs[owner]
    prev_lab[pos] = np.concatenate([zero, labs[:-1]])[owner]
    next_lab[pos] = np.concatenate([labs[1:], zero])[owner]
    last = offset == np.repeat(lens - 1, lens)
    wpos[pos] = np.where(offset == 0, np.where(last, 4, 1), np.where(last, 3, 2)).astype(np.uint64)
    # word identity: a polynomial hash of its characters, position-free (prefix sums mod 2**64)
    powers, inv = _powers(n)
    prefix = np.concatenate([zero, np.cumsum(cp * powers, dtype=np.uint64)])
    ends = starts + lens
    ids = (prefix[ends] - prefix[starts]) * inv[starts] + lens.astype(np.uint64)
    word[pos] = np.where(lens > 1, ids, 0).astype(np.uint64)[owner]
    return lab, word, wpos, prev_lab, next_lab


@functools.cache
def _hash_constants(widths: tuple[int, ...]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Per template (by its number of atoms): the hash seed (templates, 1) and multipliers (templates, max width)."""
    width = max(widths)
    mul = np.array([[_MUL_INT] * w + [1] * (width - w) for w in widths], dtype=np.uint64)
    seeds = np.array([(_SEED_INT * (t + 1)) & 0xFFFFFFFFFFFFFFFF for t in range(len(widths))], dtype=np.uint64)[:, None]
    seeds.flags.writeable = mul.flags.writeable = False  # shared by every call
    return seeds, mul


def _powers(n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """_P**(i+1) and _P_INV**(i+1) mod 2**64 for i < n (slices of a cached table, sizes by powers of two)."""
    powers, inv = _power_table(max(1024, 1 << max(n - 1, 0).bit_length()))
    return powers[:n], inv[:n]


@functools.cache
def _power_table(size: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    tables = (np.cumprod(np.full(size, _P, dtype=np.uint64)), np.cumprod(np.full(size, _P_INV, dtype=np.uint64)))
    for array in tables:
        array.flags.writeable = False  # shared by every call
    return tables


def _bies(n: int, spans: Sequence[tuple[int, int]]) -> npt.NDArray[np.uint64]:
    """Per character: 0 outside, 1 begin, 2 inside, 3 end, 4 single-character span (later spans win)."""
    out = np.zeros(n, dtype=np.uint64)
    for s, e in spans:
        if e - s == 1:
            out[s] = 4
        elif e > s:
            out[s] = 1
            out[s + 1:e - 1] = 2
            out[e - 1] = 3
    return out


def _hashed_emissions(atoms: npt.NDArray[np.uint64], seeds: npt.NDArray[np.uint64], mul: npt.NDArray[np.uint64],
                      mask: np.uint64, weights: npt.NDArray[np.float32], out: npt.NDArray[np.float32]
                      ) -> None:  # pragma: no cover - compiled
    """out[i, tag] = Σ_t weights[hash_t(i), tag]: `OrgTagger.features` and `emissions` fused.

    It reads the row-major weights (one cache line holds a row's five tags; a character's rows are fetched once for
    all tags), where numpy's gather was faster from the tag-major copy.

    The sum over templates follows numpy's pairwise order for a contiguous float32 row (eight running sums, combined
    ((0+1)+(2+3))+((4+5)+(6+7)), then the rest one by one; fewer than eight: one by one from 0; numpy splits rows
    longer than 128 further, the tagger has 35 templates), so the result is the same bits as
    `np.take(weights_t, feats, axis=1).sum(axis=2)` (tests/triage/test_orgs.py checks it).
    """
    n_t, width, n = atoms.shape
    n_tags = weights.shape[1]
    shift = np.uint64(29)
    idx = np.empty(n_t, dtype=np.int64)
    r = np.empty(8, dtype=np.float32)
    for i in range(n):
        for t in range(n_t):
            h = seeds[t]
            for k in range(width):
                h = (h ^ atoms[t, k, i]) * mul[t, k]
            idx[t] = np.int64((h ^ (h >> shift)) & mask)
        for tag in range(n_tags):
            if n_t < 8:
                res = np.float32(0.0)
                for t in range(n_t):
                    res += weights[idx[t], tag]
            else:
                for j in range(8):
                    r[j] = weights[idx[j], tag]
                t = 8
                while t < n_t - n_t % 8:
                    for j in range(8):
                        r[j] += weights[idx[t + j], tag]
                    t += 8
                res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
                while t < n_t:
                    res += weights[idx[t], tag]
                    t += 1
            out[i, tag] = res


_emission_kernel = lazy_njit(_hashed_emissions,
                             "void(uint64[:, :, ::1], uint64[::1], uint64[:, ::1], uint64, float32[:, ::1], float32[:, ::1])")


class StateLayer:
    """BIOES probabilities from the word tagger's per-character encoder states (LAC's BiGRU), a feature of the CRF.

    `probs(states)` = softmax(states · coef + bias) (n, 5): a logistic regression fitted on the annotations over
    LAC's pretrained states (training/orgs.py, out-of-fold for the CRF's own training records); the CRF weighs these
    five numbers per tag (`weights`, (5, 5)) like any other feature.
    """

    def __init__(self, coef: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], weights: npt.NDArray[np.float32]) -> None:
        if coef.ndim != 2 or coef.shape[1] != len(TAGS) or bias.shape != (len(TAGS),) or weights.shape != (len(TAGS), len(TAGS)):
            raise ValueError(f"state layer shapes: coef {coef.shape}, bias {bias.shape}, weights {weights.shape}")
        self.coef = coef.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.weights = weights.astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def probs(self, states: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if states.ndim != 2 or states.shape[1] != self.dim:
            raise ValueError(f"expected states of shape (n, {self.dim}), got {states.shape}")
        z = states @ self.coef + self.bias
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)  # type: ignore[no-any-return]

    def emissions(self, states: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return self.probs(states) @ self.weights  # type: ignore[no-any-return]


class SequenceLayer:
    """A small neural tagger over each clause chunk whose BIOES scores are added, times `weight`, to the CRF's (orgs-6).

    Per character the inputs are a character embedding, LAC's word label with the character's position in its word,
    the candidate channels and lexicon matches as one-hots (the CRF's own inputs) and LAC's encoder states; a ReLU
    projection, then a bidirectional LSTM or two width-3 convolutions per chunk (zero-padded at its edges) and a
    linear output give five scores; its own CRF transitions are added to the tagger's, times the same weight. Trained
    with torch (training/orgs_neural.py), run here with numpy: `arrays` holds the weights under the names
    training/orgs_neural.to_layer writes, `chars` and `labels` the vocabularies.
    """

    def __init__(self, arrays: Mapping[str, npt.NDArray[np.float32]], chars: str, labels: Sequence[str], weight: float,
                 all_chunks: bool = False) -> None:
        self.a = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        self.all_chunks = all_chunks  # read every chunk, not only candidate_chunks (experiments; ~2.5× the time)
        self.chars = chars
        self.labels = list(labels)
        self.weight = float(weight)
        self.arch = "cnn" if "conv1_w" in self.a else "lstm"
        self._char_id = {ch: i + 2 for i, ch in enumerate(chars)}  # 0 padding, 1 unknown
        self._label_id = {lab: i + 1 for i, lab in enumerate(self.labels)}
        self._id_table = np.ones(0x10000, dtype=np.int64)  # character ids over the Basic Multilingual Plane
        for ch, i in self._char_id.items():
            if ord(ch) < 0x10000:
                self._id_table[ord(ch)] = i
        a = self.a
        # the projection's rows per input block, so one-hots and embeddings are gathered instead of multiplied
        n_char, n_lab = a["char_emb"].shape[1], a["label_emb"].shape[1]
        n_hot = SEQUENCE_HOT
        w = a["proj_w"]
        self._char_proj = a["char_emb"] @ w[:n_char]
        self._label_proj = a["label_emb"] @ w[n_char:n_char + n_lab]
        self._hot_proj = np.ascontiguousarray(w[n_char + n_lab:n_char + n_lab + n_hot])
        self._state_proj = np.ascontiguousarray(w[n_char + n_lab + n_hot:])
        if self.arch == "lstm":
            self.hidden = int(a["lstm_whh_f"].shape[1])
            self._wih = np.ascontiguousarray(np.concatenate([a["lstm_wih_f"], a["lstm_wih_b"]]).T)  # (proj, 8h)
            self._bias = np.concatenate([a["lstm_b_f"], a["lstm_b_b"]])

    def projected(self, text: str, words: Sequence[tuple[int, int, str]], marks: Mapping[str, Sequence[tuple[int, int]]],
                  lexicon_matches: Sequence[tuple[int, int, int]], states: npt.NDArray[np.float32],
                  rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """(len(rows), projection width): ReLU(inputs · proj_w + proj_b) of the characters `rows`, the inputs' blocks
        gathered (one-hots, embeddings) or multiplied (states)."""
        n = len(text)
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = self._id_table[np.minimum(cp, 0xFFFF)]
        if cp.max(initial=0) > 0xFFFF:  # beyond the Basic Multilingual Plane: through the dict
            ids = np.where(cp > 0xFFFF, [self._char_id.get(ch, 1) for ch in text], ids)
        lab, hot = sequence_codes(n, words, marks, lexicon_matches, self._label_id)
        x = self._char_proj[ids[rows]] + self._label_proj[lab[rows]]
        x += np.asarray(states[rows], dtype=np.float32) @ self._state_proj
        for c in range(hot.shape[1]):  # the one-hots: one projection row per channel and one for the lexicon
            x += self._hot_proj[hot[rows, c]]
        return np.maximum(x + self.a["proj_b"], np.float32(0.0))  # type: ignore[no-any-return]

    def emissions(self, text: str, words: Sequence[tuple[int, int, str]], marks: Mapping[str, Sequence[tuple[int, int]]],
                  lexicon_matches: Sequence[tuple[int, int, int]], states: npt.NDArray[np.float32],
                  chunks: Sequence[tuple[int, int]]) -> npt.NDArray[np.float32]:
        """(len(text), 5) BIOES scores (not yet weighted); zero outside the chunks. All chunks run as one batch.

        `lexicon_matches`: the tagger's `Lexicon.matches(text)`."""
        out = np.zeros((len(text), len(TAGS)), dtype=np.float32)
        if not chunks:
            return out
        rows = np.concatenate([np.arange(s, e) for s, e in chunks])
        x = self.projected(text, words, marks, lexicon_matches, states, rows)
        if self.arch == "cnn":
            return self._cnn(x, chunks, rows, out)
        a, hid = self.a, self.hidden
        lengths = np.array([e - s for s, e in chunks])
        t_max = int(lengths.max())
        steps = np.arange(t_max)
        valid = steps[None, :] < lengths[:, None]  # (b, t)
        starts = np.array([s for s, _ in chunks])
        fwd_idx = np.where(valid, starts[:, None] + steps[None, :], 0)
        bwd_idx = np.where(valid, starts[:, None] + lengths[:, None] - 1 - steps[None, :], 0)
        gates = np.zeros((len(text), 8 * hid), dtype=np.float32)
        gates[rows] = x @ self._wih + self._bias  # both directions' input gates, once per character of the chunks
        h_f = self._run(gates[fwd_idx, :4 * hid], a["lstm_whh_f"])
        h_b = self._run(gates[bwd_idx, 4 * hid:], a["lstm_whh_b"])
        out[fwd_idx[valid]] += h_f[valid] @ a["out_w"][:hid] + a["out_b"]
        out[bwd_idx[valid]] += h_b[valid] @ a["out_w"][hid:]
        return out

    def _run(self, gates_x: npt.NDArray[np.float32], whh: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One LSTM direction over (b, t, 4h) input gates, left to right; torch's gate order i, f, g, o."""
        b, t_max, four = gates_x.shape
        hid = four // 4
        whh_t = np.ascontiguousarray(whh.T)
        h = np.zeros((b, hid), dtype=np.float32)
        c = np.zeros((b, hid), dtype=np.float32)
        out = np.empty((b, t_max, hid), dtype=np.float32)
        for t in range(t_max):
            g = gates_x[:, t] + h @ whh_t
            sig = 0.5 * np.tanh(0.5 * g) + 0.5  # the logistic function, for all four gates at once
            c = sig[:, hid:2 * hid] * c + sig[:, :hid] * np.tanh(g[:, 2 * hid:3 * hid])
            h = sig[:, 3 * hid:] * np.tanh(c)
            out[:, t] = h
        return out

    def _cnn(self, x: npt.NDArray[np.float32], chunks: Sequence[tuple[int, int]], rows: npt.NDArray[np.int64],
             out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Two width-3 ReLU convolutions per chunk: chunks laid end to end with one zero row between them.

        `x`: the projected characters `rows` of the chunks, in order."""
        a = self.a
        place = np.concatenate([np.arange(e - s) + (s_i + 1) for (s, e), s_i in
                                zip(chunks, np.cumsum([0] + [e - s + 1 for s, e in chunks[:-1]]), strict=True)])
        size = int(place[-1]) + 2
        z = np.zeros((size, x.shape[1]), dtype=np.float32)
        z[place] = x
        keep = np.zeros((size, 1), dtype=bool)
        keep[place] = True
        for name in ("conv1", "conv2"):
            w, bias = a[name + "_w"], a[name + "_b"]
            y = np.zeros((size, w.shape[2]), dtype=np.float32)
            y[1:-1] = z[:-2] @ w[0] + z[1:-1] @ w[1] + z[2:] @ w[2] + bias
            z = np.where(keep, np.maximum(y, np.float32(0.0)), np.float32(0.0))
        out[rows] = z[place] @ a["out_w"] + a["out_b"]
        return out


# The candidate sources a chunk must touch for the sequence layer to read it (gazetteer places alone do not count).
_CANDIDATE_CHANNELS = tuple(ch for ch in CHANNELS if ch != "place")


def candidate_chunks(n: int, chunks: Sequence[tuple[int, int]], marks: Mapping[str, Sequence[tuple[int, int]]],
                     lexicon_matches: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """The chunks that overlap an organisation candidate (a department name, a LAC ORG word, a word run or suffix
    ending in an organisation head, a bare type noun, a head, a lexicon name): the only ones the sequence layer reads.
    On written dev these are 24% of the chunks (33% of the characters) and hold all 427 gold organisation spans; in
    the others the CRF decides alone."""
    touched = np.zeros(n + 1, dtype=np.int64)
    for ch in _CANDIDATE_CHANNELS:
        for s, e in marks.get(ch, ()):
            touched[s] += 1
            touched[e] -= 1
    for s, e, _ in lexicon_matches:
        touched[s] += 1
        touched[e] -= 1
    covered = np.concatenate([[0], np.cumsum(np.cumsum(touched)[:n] > 0)])  # covered[i]: candidate characters before i
    return [(a, b) for a, b in chunks if covered[b] > covered[a]]


SEQUENCE_HOT = 5 * len(CHANNELS) + 25  # one-hot width: BIES × each channel, then BIES × lexicon bucket


def sequence_codes(n: int, words: Sequence[tuple[int, int, str]], marks: Mapping[str, Sequence[tuple[int, int]]],
                   lexicon_matches: Sequence[tuple[int, int, int]], label_id: Mapping[str, int]
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The sequence layer's discrete inputs per character, shared by its trainer and its server: (label code (n,),
    one-hot indices (n, channels + 1)) — a word label id × 5 + the position in the word; per channel c, c × 5 + its
    BIES code; last, 5 × channels + the lexicon match's BIES code × 5 + bucket."""
    lab = np.zeros(n, dtype=np.int64)
    if words:
        bounds = np.array([(s, e) for s, e, _ in words], dtype=np.int64)
        label = np.array([label_id.get(w, 0) for _, _, w in words], dtype=np.int64)
        lab[:] = _word_positions(n, bounds, label)
    hot = np.empty((n, len(CHANNELS) + 1), dtype=np.int64)
    for c, ch in enumerate(CHANNELS):
        hot[:, c] = c * 5 + _bies(n, marks.get(ch, ())).astype(np.int64)
    lex = np.zeros(n, dtype=np.int64)
    for s, e, bucket in lexicon_matches:
        lex[s:e] = _bies(e - s, [(0, e - s)]).astype(np.int64) * 5 + bucket
    hot[:, -1] = 5 * len(CHANNELS) + lex
    return lab, hot


def _word_positions(n: int, bounds: npt.NDArray[np.int64], label: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Per character: its word's label id × 5 + its position in the word (1 begin, 2 inside, 3 end, 4 single); 0 outside."""
    out = np.zeros(n, dtype=np.int64)
    s, e = bounds[:, 0], bounds[:, 1]
    length = e - s
    idx = np.repeat(np.arange(len(bounds)), length)
    pos = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    size = np.repeat(length, length)
    code = np.where(size == 1, 4, np.where(pos == 0, 1, np.where(pos == size - 1, 3, 2)))
    out[np.repeat(s, length) + pos] = label[idx] * 5 + code
    return out


class OrgTagger:
    """BIOES tagger: `spans(text, words, marks[, states])` → organisation (start, end) spans.

    With a `state_layer` it also reads the word tagger's per-character encoder states (`uses_states`); the extractor
    then asks LAC for `words_states` instead of `words`.
    """

    def __init__(self, weights: npt.NDArray[np.float32], transitions: npt.NDArray[np.float32], bits: int, version: str,
                 lexicon: Lexicon | None = None, state_layer: StateLayer | None = None,
                 sequence_layer: SequenceLayer | None = None) -> None:
        self.lexicon = lexicon or Lexicon({})
        self.state_layer = state_layer
        self.sequence_layer = sequence_layer
        if sequence_layer is not None and state_layer is None:
            raise ValueError("a sequence layer reads encoder states: the tagger needs its state layer too")
        self.weights_ = np.ascontiguousarray(weights, dtype=np.float32)  # the same array when it already is one
        self.transitions_ = transitions
        self.bits = bits
        self.version = version
        self._mask = np.uint64((1 << bits) - 1)
        both = transitions if sequence_layer is None else transitions + sequence_layer.weight * sequence_layer.a["trans"]
        self._trans = np.where(_ALLOWED, both, NEG).astype(np.float32)
        self._weights_t = np.ascontiguousarray(weights.T)
        kernel()  # compile (or load) the Viterbi and the emission pass now, not at the first petition
        _emission_kernel()

    # -- persistence
    @classmethod
    def load(cls, path: Path) -> OrgTagger:
        """Weights from the `.npz` written by `save` (rows stored sparsely: only the ones training touched)."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            weights = np.zeros((1 << int(meta["bits"]), len(TAGS)), dtype=np.float32)
            weights[z["rows"]] = z["values"].astype(np.float32)
            layer = (StateLayer(z["state_coef"], z["state_bias"], z["state_weights"]) if "state_coef" in z.files
                     else None)
            seq = meta.get("sequence")
            sequence = (SequenceLayer({k[4:]: z[k] for k in z.files if k.startswith("seq_")}, seq["chars"], seq["labels"],
                                      seq["weight"]) if seq else None)
            return cls(weights, z["transitions"].astype(np.float32), int(meta["bits"]), str(meta["version"]),
                       Lexicon(meta.get("lexicon", {})), layer, sequence)

    def save(self, path: Path, extra: Mapping[str, object] | None = None) -> None:
        rows = np.flatnonzero(np.any(self.weights_ != 0, axis=1)).astype(np.int32)
        meta = {"version": self.version, "bits": self.bits, "tags": TAGS, "channels": CHANNELS, **(extra or {}),
                "lexicon": self.lexicon.names}
        layer, seq = self.state_layer, self.sequence_layer
        arrays = {} if layer is None else {"state_coef": layer.coef, "state_bias": layer.bias, "state_weights": layer.weights}
        if seq is not None:
            meta["sequence"] = {"chars": seq.chars, "labels": seq.labels, "weight": seq.weight}
            arrays.update({"seq_" + k: v for k, v in seq.a.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, rows=rows, values=self.weights_[rows].astype(np.float32),
                                transitions=self.transitions_.astype(np.float32),
                                meta=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)

    @property
    def uses_states(self) -> bool:
        return self.state_layer is not None

    # -- features
    def features(self, text: str, words: Sequence[tuple[int, int, str]], marks: Mapping[str, Sequence[tuple[int, int]]],
                 lexicon: Lexicon | None = None) -> npt.NDArray[np.int64]:
        """(len(text), n_templates) hashed feature rows (`lexicon` replaces the model's own, for training folds)."""
        atoms, seeds, mul = self._atoms(text, words, marks, lexicon)
        # h = seed(t); h = (h ^ atom) * MUL per atom, for all templates at once: missing atoms are (0, ×1), a no-op
        h = seeds
        for k in range(mul.shape[1]):
            h = (h ^ atoms[:, k]) * mul[:, k, None]
        return ((h ^ (h >> np.uint64(29))) & self._mask).astype(np.int64).T

    def text_emissions(self, text: str, words: Sequence[tuple[int, int, str]],
                       marks: Mapping[str, Sequence[tuple[int, int]]],
                       lexicon_matches: Sequence[tuple[int, int, int]] | None = None) -> npt.NDArray[np.float32]:
        """`emissions(features(text, words, marks))`, bit for bit, in one compiled pass (hash, gather, sum)."""
        atoms, seeds, mul = self._atoms(text, words, marks, matches=lexicon_matches)
        out = np.empty((len(text), len(TAGS)), dtype=np.float32)
        # the cached constants are read-only arrays, a different type to numba: pass (tiny) writable copies
        _emission_kernel()(atoms, seeds[:, 0].copy(), mul.copy(), self._mask, self.weights_, out)
        return out

    def _atoms(self, text: str, words: Sequence[tuple[int, int, str]], marks: Mapping[str, Sequence[tuple[int, int]]],
               lexicon: Lexicon | None = None, matches: Sequence[tuple[int, int, int]] | None = None
               ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """The feature templates' atoms (templates, width, n) and their hash seeds (templates, 1) and multipliers."""
        n = len(text)
        lex = np.zeros(n, dtype=np.uint64)
        for s, e, b in matches if matches is not None else (lexicon or self.lexicon).matches(text):
            pos = _bies(n, [(s, e)])[s:e]
            lex[s:e] = pos * np.uint64(8) + np.uint64(b)
        # the nearest organisation head ending to the right (distance ≤ 12, which head): 砂石|厂, 颐养|院
        head_ahead = np.zeros(n, dtype=np.uint64)
        for s, e in reversed(marks.get("head", ())):
            lo = max(0, e - 13)
            head_ahead[lo:e] = (np.arange(e - lo, 0, -1, dtype=np.uint64) << np.uint64(32)) + np.uint64(_stable_id(text[s:e]))
        # inside quotation marks (“夕阳红颐养院”): quoted names often have no suffix
        quoted = np.zeros(n, dtype=np.uint64)
        for m in _QUOTED.finditer(text):
            quoted[m.start() + 1:m.end() - 1] = 1
            if m.end() - m.start() > 2:
                quoted[m.start() + 1] = 2
                quoted[m.end() - 2] = 3
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        digit = (cp >= 48) & (cp <= 57)
        cp = np.where(digit, np.uint64(48), cp)  # all ASCII digits read as 0
        ctype = np.where(digit, 1, np.where(cp < 128, 2, np.where((cp >= 0x4E00) & (cp <= 0x9FA5), 3, 4))).astype(np.uint64)
        pad = np.array([1, 2], dtype=np.uint64)
        c = np.concatenate([pad, cp, pad + 2, pad + 4])  # c[i + 2] is text[i]
        lab, word, wpos, prev_lab, next_lab = _word_atoms(cp, words)
        m = {ch: _bies(n, marks.get(ch, ())) for ch in CHANNELS}
        all_marks = np.zeros(n, dtype=np.uint64)
        for ch in CHANNELS:
            all_marks = all_marks * np.uint64(5) + m[ch]
        ctx = [c[k:k + n] for k in range(5)]  # text[i-2] … text[i+2]
        ct_pad = np.concatenate([np.zeros(1, dtype=np.uint64), ctype, np.zeros(1, dtype=np.uint64)])
        templates: list[tuple[npt.NDArray[np.uint64], ...]] = [
            (np.zeros(n, dtype=np.uint64),),  # bias
            *((x,) for x in ctx),
            (ctx[1], ctx[2]), (ctx[2], ctx[3]), (ctx[0], ctx[1]), (ctx[3], ctx[4]), (ctx[1], ctx[2], ctx[3]),
            (ct_pad[:-2], ctype, ct_pad[2:]),
            (lab, wpos), (lab, wpos, ctx[2]), (prev_lab, lab), (lab, next_lab), (word, wpos),
            *((m[ch],) for ch in CHANNELS),
            (all_marks,), (all_marks, wpos), (m["head"], ctx[2]), (m["place"], lab),
            (lex,), (lex, m["bare_org"]), (head_ahead,), (head_ahead >> np.uint64(32), lab), (quoted,), (quoted, lab),
            (ctx[3], ctx[4], c[5:5 + n]),
        ]
        seeds, mul = _hash_constants(tuple(len(a) for a in templates))
        atoms = np.zeros((len(templates), mul.shape[1], n), dtype=np.uint64)  # (templates, width, n)
        for t, template in enumerate(templates):
            for k, atom in enumerate(template):
                atoms[t, k] = atom
        return atoms, seeds, mul

    # -- decoding
    @staticmethod
    def chunks(text: str, decoding: bool = False) -> list[tuple[int, int]]:
        """(start, end) of the runs between break characters (punctuation, quotes, whitespace; decoding: conjunctions)."""
        return [m.span() for m in (_DECODE_CHUNK if decoding else _CHUNK).finditer(text)]

    def emissions(self, feats: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """(len, tags) summed feature weights; gathered from the tag-major copy (3–4× faster than rows of 5)."""
        return np.take(self._weights_t, feats, axis=1).sum(axis=2).T  # type: ignore[no-any-return]

    def decode(self, emissions: npt.NDArray[np.float32], chunks: Sequence[tuple[int, int]]) -> npt.NDArray[np.int64]:
        """Best BIOES path per chunk (one numpy batch over the chunks); characters outside chunks are O."""
        return viterbi_chunks(emissions, chunks, self._trans)

    def spans(self, text: str, words: Sequence[tuple[int, int, str]], marks: Mapping[str, Sequence[tuple[int, int]]],
              states: npt.NDArray[np.float32] | None = None) -> list[tuple[int, int]]:
        """`states`: (len(text), dim) encoder states, required when `uses_states`."""
        if not text:
            return []
        matches = self.lexicon.matches(text)
        em = self.text_emissions(text, words, marks, matches)
        if self.state_layer is not None:
            if states is None or len(states) != len(text):
                raise ValueError("this organisation tagger reads encoder states: pass states of the text's length")
            em = em + self.state_layer.emissions(states)
            if self.sequence_layer is not None:
                seq = self.sequence_layer
                chunks = self.chunks(text)
                chunks = chunks if seq.all_chunks else candidate_chunks(len(text), chunks, marks, matches)
                if chunks:
                    em = em + np.float32(seq.weight) * seq.emissions(text, words, marks, matches, states, chunks)
        return tags_to_spans(self.decode(em, self.chunks(text, decoding=True)))


def viterbi_chunks(em: npt.NDArray[np.float32], chunks: Sequence[tuple[int, int]], trans: npt.NDArray[np.float32]
                   ) -> npt.NDArray[np.int64]:
    """Best BIOES tag per character, each chunk decoded on its own (starts with O/B/S, ends with O/E/S); O outside."""
    return viterbi_spans(em, chunks, trans, _START_OK, _END_OK)


def tags_to_spans(tags: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    out, start = [], -1
    for i, t in enumerate(tags.tolist()):
        if t == _S:
            out.append((i, i + 1))
        elif t == _B:
            start = i
        elif t == _E and start >= 0:
            out.append((start, i + 1))
            start = -1
        elif t == _O:
            start = -1
    return out


def spans_to_tags(n: int, spans: Sequence[tuple[int, int]]) -> npt.NDArray[np.int64]:
    tags = np.zeros(n, dtype=np.int64)
    for s, e in spans:
        if e - s == 1:
            tags[s] = _S
        else:
            tags[s], tags[s + 1:e - 1], tags[e - 1] = _B, _I, _E
    return tags
