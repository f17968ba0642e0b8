"""Hot model activation: every worker follows the store's active classifier version without a restart.

`POST /api/v1/models/{name}/activate` only records the choice in the store (`model_versions.active`).
Each worker runs one `ModelWatcher` task: at most once every TRIAGE_MODEL_POLL_SECONDS it reads the
active classifier version (one indexed single-row SELECT) and, when that differs from what the worker
serves, loads the registered directory in a worker thread — checking that its manifest still has the
sha256 registered — and swaps `pipeline.classifier` in one assignment. A request already running holds
its own reference to the old classifier (`TriagePipeline._require`) and finishes on it; the next one
uses the new model, and its suggestions and decision carry the new version. A load that fails keeps the
old model and logs an error naming the version and the error type (never case data); it is not retried
until another version is activated or the files are fixed and the version re-activated.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

from triage.errors import TriageError

logger = logging.getLogger(__name__)

MODEL_KIND = "classifier"


class ModelWatcher:
    """Follows the active classifier version of the store for one worker (see the module docstring)."""

    def __init__(self, state: Any, store: Any, *, poll_seconds: float, onnx_threads: int = 1) -> None:
        self.state = state  # app.state: pipeline, model_dir, model_version
        self.store = store
        self.poll_seconds = poll_seconds
        self.onnx_threads = onnx_threads
        self._failed: tuple[str, str] | None = None  # (name, sha256) of the last version that failed to load
        self.swaps = 0

    def check(self) -> bool:
        """Load and swap in the active version when it is not the one served; True when swapped."""
        try:
            rec = self.store.active_model_version(MODEL_KIND)
        except TriageError as exc:  # e.g. the schema is behind: keep serving, try again later
            logger.warning("active model version not readable: %s", exc.code)
            return False
        if rec is None or rec.name == getattr(self.state, "model_version", None):
            return False
        if self._failed == (rec.name, rec.sha256):
            return False
        try:
            classifier = self._load(Path(rec.path), rec.sha256)
        except Exception as exc:  # noqa: BLE001 — any load failure keeps the old model
            self._failed = (rec.name, rec.sha256)
            code = getattr(exc, "code", None)
            logger.error("model %s not activated in this worker (keeping %s): %s%s", rec.name,
                         getattr(self.state, "model_version", None), type(exc).__name__, f" {code}" if code else "")
            return False
        previous = getattr(self.state, "model_version", None)
        self.state.pipeline.classifier = classifier  # one reference swap: requests in flight keep the old one
        self.state.model_dir = rec.path
        self.state.model_version = rec.name
        self._failed = None
        self.swaps += 1
        logger.info("model %s activated in this worker (was %s): classifier %s", rec.name, previous, classifier.version)
        return True

    def _load(self, model_dir: Path, sha256: str) -> Any:
        from serving.sessions import OnnxClassifier
        from triage.errors import ArtifactMismatchError

        manifest = model_dir / "manifest.json"
        if not manifest.is_file():
            raise ArtifactMismatchError(f"{manifest} not found")
        if hashlib.sha256(manifest.read_bytes()).hexdigest() != sha256:
            raise ArtifactMismatchError(f"{manifest} is not the manifest registered for this version")
        return OnnxClassifier(model_dir, self.state.pipeline.taxonomy, intra_op_threads=self.onnx_threads)

    async def run(self) -> None:
        """Check now, then every `poll_seconds`, until cancelled (loads run in a worker thread)."""
        while True:
            try:
                await asyncio.to_thread(self.check)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — the watcher must outlive a failing store read
                logger.warning("model version check failed: %s", type(exc).__name__)
            await asyncio.sleep(self.poll_seconds)


def register_model_dir(store: Any, model_dir: Path | str) -> str:
    """Register a model directory as a version (name = manifest version, sha256 of manifest.json); its name.

    Raises:
        ArtifactMismatchError: no valid manifest in the directory. ConflictError: the name is registered
            with another manifest.
    """
    import json

    from triage.manifest import load_manifest

    model_dir = Path(model_dir).resolve()
    load_manifest(model_dir)  # validates the schema
    raw = (model_dir / "manifest.json").read_bytes()
    manifest = json.loads(raw)
    summary = {k: manifest.get(k) for k in ("name", "version", "created_at", "taxonomy_version", "segmenter", "git_commit")}
    summary["heads"] = sorted(manifest.get("heads", {}))
    name = str(manifest.get("version") or manifest.get("name"))
    store.register_model_version(name, str(model_dir), hashlib.sha256(raw).hexdigest(), summary, kind=MODEL_KIND)
    return name
