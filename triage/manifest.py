"""ModelManifest: what a model directory contains, written by training/ and read by serving/.

A model directory (models/NAME/) holds the ONNX graph(s), `manifest.json` and `MODEL_CARD.md`.
Each head names its graph (`artifact`, usually one `model.onnx` shared by all heads so identical
vectorisers run once) and its output. A graph takes the segmented text
(`triage.text.segmented_text`) as a string tensor [N, 1]; each head's output holds calibrated
probabilities [N, len(labels)] in the order of the head's `labels`. Serving needs only
`segment()` and onnxruntime; labels never appear in code. Transformer models (`arch` "bert") take
BERT ids instead (`input.kind` "token_ids", vocabulary file in the directory; serving.wordpiece).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from triage.errors import ArtifactMismatchError
from triage.taxonomy import Taxonomy

MANIFEST_FILE = "manifest.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
SCHEMA_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataFile(_Frozen):
    path: str = Field(description="Path as given to `triage train` (relative to the repository when inside it)")
    sha256: str
    rows: int = Field(ge=0, description="Records read from the file")


class HeadSpec(_Frozen):
    """One classification head: a gold field, its ordered labels and its ONNX graph."""

    field: str = Field(description="Gold field the head predicts (track, department, request_type, label …)")
    labels: list[str] = Field(min_length=2, description="Class labels in the order of the probability columns")
    artifact: str = Field(description="ONNX file name inside the model directory")
    input_name: str = Field("text", description="Graph input: segmented text, string tensor [N, 1]")
    output_name: str = Field("probabilities", description="Graph output of this head: float tensor [N, len(labels)]")
    train_rows: int = Field(ge=0)
    calibration: dict[str, Any] = Field(default_factory=dict, description="Method, temperature, ECE before/after")
    parity_max_abs_diff: float | None = Field(None, description="max |p_onnx - p_sklearn| on the parity split")


class InputSpec(_Frozen):
    """What the graph(s) take. Linear TF-IDF models: the segmented text; transformer models: BERT ids."""

    kind: Literal["segmented_text", "token_ids"] = Field(
        "segmented_text", description="segmented_text: string [N, 1]; token_ids: input_ids + attention_mask int64 [N, L]")
    vocab: str | None = Field(None, description="token_ids: vocab.txt inside the model directory (listed in artifacts)")
    lowercase: bool = Field(False, description="token_ids: lowercase + strip accents before WordPiece")
    max_length: int | None = Field(None, ge=3, description="token_ids: ids per text including [CLS] and [SEP]")
    title_repeat: int = Field(
        0, ge=0, le=5, description="The record's title (when it has one) is put before the text this many times, "
                                   "joined by 。 (0: the text alone — models written before this field)")

    def compose(self, text: str, title: str | None = None) -> str:
        """The raw model string of one record (before normalisation): see `compose_input`."""
        return compose_input(text, title, self.title_repeat)


def compose_input(text: str, title: str | None, title_repeat: int) -> str:
    """The raw string a head sees for a record: its title `title_repeat` times, then the text, joined by 。.

    A record without a (non-blank) title, or `title_repeat` 0, gives the text unchanged. Training
    (training.datasets.model_input) and serving (serving.sessions.OnnxClassifier) both build the input here,
    so a model sees at serving time exactly what it was trained on.
    """
    title = title.strip() if isinstance(title, str) else ""
    if not title or title_repeat <= 0:
        return text
    return "。".join([title] * title_repeat + [text])


class ModelManifest(_Frozen):
    schema_version: int = SCHEMA_VERSION
    arch: str = Field("linear", description="linear (TF-IDF linear heads) or bert (transformer encoder + heads)")
    input: InputSpec = Field(default_factory=InputSpec, description="Graph input and its preprocessing")
    name: str
    version: str = Field(description="Unique version: UTC timestamp + short hash of the artifacts")
    created_at: datetime
    taxonomy_version: str
    segmenter: str = Field(description="triage.text.segmenter_id() at training time: engine + user dictionary hash")
    heads: dict[str, HeadSpec]
    artifacts: dict[str, str] = Field(description="File name → sha256 for every file the manifest covers")
    data_files: list[DataFile] = Field(default_factory=list)
    train_config: dict[str, Any] = Field(default_factory=dict, description="The resolved training configuration")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Dev metrics per head (test metrics live in reports)")
    git_commit: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def write(self, model_dir: Path) -> Path:
        path = model_dir / MANIFEST_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    def verify_artifacts(self, model_dir: Path) -> None:
        """Check every listed file exists and has the recorded sha256.

        Raises:
            ArtifactMismatchError: a file is missing or was changed after export.
        """
        for name, digest in self.artifacts.items():
            path = model_dir / name
            if not path.exists():
                raise ArtifactMismatchError(f"{path} listed in the manifest is missing. Re-export the model.")
            if sha256_file(path) != digest:
                raise ArtifactMismatchError(
                    f"{path} does not match the sha256 in {model_dir / MANIFEST_FILE}: the artifact was changed "
                    "after export. Re-export the model or restore the file."
                )

    def check_taxonomy(self, taxonomy: Taxonomy) -> None:
        """The manifest must be built for the loaded taxonomy, with known codes in every taxonomy head.

        Raises:
            ArtifactMismatchError: another taxonomy version, or a label the taxonomy does not define.
        """
        if self.taxonomy_version != taxonomy.version:
            raise ArtifactMismatchError(
                f"Model {self.name} {self.version} was trained for taxonomy_version {self.taxonomy_version!r} "
                f"but data/ has {taxonomy.version!r}. Retrain with `triage train` or point TRIAGE_MODEL_DIR at a "
                "matching model."
            )
        for field, head in self.heads.items():
            kind = taxonomy.field_kinds.get(field)
            if kind is None:
                continue  # custom label fields (e.g. the public topic `label`) are not in the taxonomy
            known = set(taxonomy.codes(kind))
            unknown = [label for label in head.labels if label not in known]
            if unknown:
                raise ArtifactMismatchError(
                    f"Head {field!r} has {len(unknown)} label(s) not in taxonomy {taxonomy.version} ({', '.join(unknown)}). "
                    "Retrain the model on data labelled with the current taxonomy."
                )


def load_manifest(model_dir: Path) -> ModelManifest:
    """Read and validate models/NAME/manifest.json.

    Raises:
        ArtifactMismatchError: the file is missing or does not follow the manifest schema.
    """
    path = model_dir / MANIFEST_FILE
    if not path.exists():
        raise ArtifactMismatchError(f"{path} not found: train a model with `triage train` or set TRIAGE_MODEL_DIR.")
    try:
        return ModelManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactMismatchError(f"{path} is not a valid model manifest: {exc}") from exc
