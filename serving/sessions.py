"""OnnxClassifier: the classify stage served from a model directory (manifest + one graph per head).

Follows the transformers pipeline split: `preprocess` (the record's string — its text, preceded by its
title when the manifest's `input.title_repeat` says so (triage.manifest.compose_input, as in training) —
normalised, then segmented → string feeds for linear TF-IDF models, or WordPiece → input_ids/attention_mask
for transformer models, chosen by the manifest's `input.kind`), `_run` (session.run only: the hot path), `postprocess`
(probabilities → ranked Suggestions with labels from the manifest). Implements
`triage.pipeline.Classifier`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from triage.errors import ArtifactMismatchError
from triage.manifest import ModelManifest, load_manifest
from triage.schemas import LabelScore, Suggestion
from triage.taxonomy import Taxonomy
from triage.text import normalize, segmented_text, segmenter_id

logger = logging.getLogger(__name__)

Feeds = npt.NDArray[np.object_] | list[str]


class OnnxClassifier:
    """Calibrated label suggestions for every head of one model directory."""

    def __init__(self, model_dir: Path, taxonomy: Taxonomy, *, intra_op_threads: int = 1,
                 verify_hashes: bool = True, batch_size: int = 64) -> None:
        """Load the manifest and one onnxruntime CPU session per head.

        Raises:
            ArtifactMismatchError: missing/changed artifacts, another taxonomy version, unknown
                labels, another segmentation engine, or a graph whose output does not match its labels.
        """
        import onnxruntime as ort

        self.model_dir = model_dir
        # The ONNX TF-IDF step yields a dense [rows, n-grams] matrix: run in chunks (measured: 1,000 rows in
        # one call are ~10x slower per row than chunks of 16; with the fused graph, whose one MatMul reads the
        # whole weight matrix per call, chunks of 64 gave 1.2-1.5x the throughput of 16 — `triage bench --chunk`).
        self.batch_size = max(1, batch_size)
        self.manifest: ModelManifest = load_manifest(model_dir)
        self.manifest.check_taxonomy(taxonomy)
        if verify_hashes:
            self.manifest.verify_artifacts(model_dir)
        self.input_kind = self.manifest.input.kind
        self._tokenizer = None
        if self.input_kind == "token_ids":
            self._tokenizer = self._load_tokenizer()
        else:
            self._check_segmenter()
        self.taxonomy = taxonomy
        self.version = f"{self.manifest.name}@{self.manifest.version}"
        self.fields: tuple[str, ...] = self.manifest.fields
        self._names: dict[str, dict[str, str | None]] = {}
        for fld, head in self.manifest.heads.items():
            kind = taxonomy.field_kinds.get(fld)
            self._names[fld] = {lab: (taxonomy.name_of(kind, lab) if kind else None) for lab in head.labels}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # One session per artifact: a single graph usually serves every head (shared vectorisers).
        self._sessions: dict[str, Any] = {}
        self._outputs: dict[str, list[tuple[str, str]]] = {}  # artifact → [(field, output name)]
        for fld, head in self.manifest.heads.items():
            if head.artifact not in self._sessions:
                self._sessions[head.artifact] = ort.InferenceSession(
                    str(model_dir / head.artifact), sess_options=opts, providers=["CPUExecutionProvider"])
            session = self._sessions[head.artifact]
            out = {o.name: o.shape for o in session.get_outputs()}
            shape = out.get(head.output_name)
            if shape is None or (isinstance(shape[-1], int) and shape[-1] != len(head.labels)):
                raise ArtifactMismatchError(
                    f"{head.artifact}: output {head.output_name!r} has shape {shape}, manifest lists "
                    f"{len(head.labels)} labels for head {fld!r}. Re-export the model."
                )
            expected = [head.input_name] if self.input_kind == "segmented_text" else ["input_ids", "attention_mask"]
            if [i.name for i in session.get_inputs()] != expected:
                raise ArtifactMismatchError(
                    f"{head.artifact}: graph inputs are not {expected} ({self.input_kind}). Re-export the model.")
            self._outputs.setdefault(head.artifact, []).append((fld, head.output_name))
        logger.info("classifier %s loaded from %s: heads=%s threads=%d", self.version, model_dir,
                    ",".join(self.fields), intra_op_threads)

    def _load_tokenizer(self):  # type: ignore[no-untyped-def]
        from serving.wordpiece import WordPieceTokenizer

        spec = self.manifest.input
        if not spec.vocab or spec.vocab not in self.manifest.artifacts or not (self.model_dir / spec.vocab).exists():
            raise ArtifactMismatchError(
                f"Model {self.manifest.name} takes token ids but its vocabulary {spec.vocab!r} is not a listed artifact "
                "of the directory. Re-export the model.")
        try:
            return WordPieceTokenizer.from_file(self.model_dir / spec.vocab, lowercase=spec.lowercase,
                                                max_length=spec.max_length or 512)
        except ValueError as exc:
            raise ArtifactMismatchError(f"{self.model_dir / spec.vocab}: {exc}. Re-export the model.") from exc

    def _check_segmenter(self) -> None:
        current = segmenter_id()
        engine, _, _ = self.manifest.segmenter.partition("+")
        if engine != current.partition("+")[0]:
            raise ArtifactMismatchError(
                f"Model {self.manifest.name} was trained on {engine} segmentation, this service segments with "
                f"{current.partition('+')[0]}. Retrain the model with the current triage.text engine."
            )
        if self.manifest.segmenter != current:
            logger.warning("user dictionary changed since model %s was trained (%s vs %s): retrain soon",
                           self.manifest.name, self.manifest.segmenter, current)

    # -- the three steps -----------------------------------------------------------------------

    def model_strings(self, texts: list[str], titles: list[str | None] | None = None) -> list[str]:
        """Each record's raw model string: `input.compose(text, title)` (the text alone when the model was trained
        without titles, `titles` is None or a record's title is None/blank).

        Raises:
            ValueError: `titles` is given with another length than `texts`.
        """
        spec = self.manifest.input
        if titles is None or not spec.title_repeat:
            return list(texts)
        if len(titles) != len(texts):
            raise ValueError(f"{len(titles)} titles for {len(texts)} texts")
        return [spec.compose(t, title) for t, title in zip(texts, titles, strict=True)]

    def preprocess(self, texts: list[str], titles: list[str | None] | None = None) -> Feeds:
        """Compose with the titles (`model_strings`), normalise (idempotent); linear models: segment with the shared
        `segment()`, one string per row.

        Transformer models: the normalised texts (ids are made per chunk in `_run`, padded to the
        chunk's longest text).
        """
        strings = self.model_strings(texts, titles)
        if self._tokenizer is not None:
            return [normalize(t) for t in strings]
        return np.asarray([segmented_text(normalize(t)) for t in strings], dtype=object).reshape(-1, 1)

    def _chunk_feeds(self, feeds: Feeds, start: int, input_name: str) -> dict[str, Any]:
        part = feeds[start:start + self.batch_size]
        if self._tokenizer is not None:
            return self._tokenizer.encode_batch(part)  # type: ignore[arg-type]
        return {input_name: part}

    def _run(self, feeds: Feeds) -> dict[str, npt.NDArray[np.float32]]:
        out: dict[str, npt.NDArray[np.float32]] = {}
        step = self.batch_size
        for artifact, session in self._sessions.items():
            fields = [f for f, _ in self._outputs[artifact]]
            names = [o for _, o in self._outputs[artifact]]
            input_name = self.manifest.heads[fields[0]].input_name
            chunks = [session.run(names, self._chunk_feeds(feeds, i, input_name)) for i in range(0, len(feeds), step)]
            for j, fld in enumerate(fields):
                parts = [c[j] for c in chunks]
                out[fld] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return {f: out[f] for f in self.manifest.heads}

    def postprocess(self, probs: dict[str, npt.NDArray[np.float32]]) -> list[dict[str, Suggestion]]:
        n = len(next(iter(probs.values()))) if probs else 0
        results: list[dict[str, Suggestion]] = [{} for _ in range(n)]
        for fld, p in probs.items():
            labels = self.manifest.heads[fld].labels
            names = self._names[fld]
            order = np.argsort(-p, axis=1, kind="stable")
            clipped = np.clip(p, 0.0, 1.0).tolist()
            # Trusted values (labels from the checked manifest, probabilities clipped to [0, 1]): construct without
            # re-validating ~50 objects per petition, which cost as much as the ONNX run in batch jobs.
            for i in range(n):
                ranked = [
                    LabelScore.model_construct(label=labels[j], name=names[labels[j]], score=clipped[i][j])
                    for j in order[i].tolist()
                ]
                results[i][fld] = Suggestion.model_construct(field=fld, labels=ranked, model_version=self.version)
        return results

    # -- public API ------------------------------------------------------------------------------

    def predict_proba(self, texts: list[str], titles: list[str | None] | None = None) -> dict[str, npt.NDArray[np.float32]]:
        """Head → [N, len(labels)] probabilities in the manifest's label order.

        `titles`: the records' optional titles, aligned with `texts` (used when the model was trained with them).
        """
        if not texts:
            return {fld: np.zeros((0, len(h.labels)), dtype=np.float32) for fld, h in self.manifest.heads.items()}
        return self._run(self.preprocess(texts, titles))

    def predict(self, texts: list[str], titles: list[str | None] | None = None) -> list[dict[str, Suggestion]]:
        """Ranked, calibrated suggestions per head for each text (`titles` as in `predict_proba`)."""
        if not texts:
            return []
        return self.postprocess(self._run(self.preprocess(texts, titles)))
