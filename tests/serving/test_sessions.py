"""OnnxClassifier: loads a trained model directory, checks it, and serves through the app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.sessions import OnnxClassifier
from serving.settings import ServiceSettings
from tests.model_fixtures import train_tiny
from triage.errors import ArtifactMismatchError
from triage.pipeline import Classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sessions")
    train_tiny(root / "data", root / "model", fields=("track", "department"))
    return root / "model"


def test_onnx_classifier_predicts_ranked_calibrated_suggestions(model_dir: Path, taxonomy) -> None:  # type: ignore[no-untyped-def]
    clf = OnnxClassifier(model_dir, taxonomy)
    assert isinstance(clf, Classifier)
    assert clf.fields == ("track", "department")
    out = clf.predict(["建议在渝中区增设公交站点，方便市民出行。", "楼下烧烤店油烟扰民，请城管查处。"])
    assert out[0]["track"].top.label == "suggestion"
    assert out[1]["department"].top.label == "urban"
    assert out[1]["department"].top.name == taxonomy.name_of("departments", "urban")
    for sug in out[0].values():
        scores = [s.score for s in sug.labels]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert sug.model_version == clf.version
    assert clf.predict([]) == []


def test_onnx_classifier_rejects_other_taxonomy_version(model_dir: Path, taxonomy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["taxonomy_version"] = "1"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactMismatchError, match="taxonomy_version"):
        OnnxClassifier(copy, taxonomy)


def test_onnx_classifier_rejects_changed_artifact(model_dir: Path, taxonomy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    artifact = json.loads((copy / "manifest.json").read_text())["heads"]["track"]["artifact"]
    with (copy / artifact).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactMismatchError, match="sha256"):
        OnnxClassifier(copy, taxonomy)


def test_readyz_shows_classify_loaded_with_model_version(model_dir: Path) -> None:
    settings = ServiceSettings(model_dir=model_dir, log_json=False, ner=False)
    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz").json()
        clf = client.app.state.pipeline.classifier  # type: ignore[attr-defined]
    assert body["stages"]["classify"] == clf.version
    assert body["stages"]["classify"].startswith("model@")
    assert body["model_dir"] == str(model_dir)
