"""Title-aware model input: `[input] title_repeat` builds the same string in training and serving; a manifest without
the field (every model written before it) gives the text alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.model_fixtures import train_tiny
from training.config import load_config
from training.datasets import model_input, row_input
from triage.manifest import ModelManifest, compose_input, load_manifest
from triage.text import normalize, segmented_text

TEXT = "楼下烧烤店油烟扰民，每天晚上噪音很大，请城管查处。"
TITLE = "烧烤店油烟扰民"

MINIMAL_MANIFEST = {
    "name": "old", "version": "v1", "created_at": "2026-01-01T00:00:00Z", "taxonomy_version": "3",
    "segmenter": "rjieba+x", "artifacts": {"model.onnx": "0" * 64},
    "heads": {"track": {"field": "track", "labels": ["a", "b"], "artifact": "model.onnx", "train_rows": 2}},
}


def test_compose_input_puts_the_title_before_the_text_k_times() -> None:
    assert compose_input(TEXT, TITLE, 1) == f"{TITLE}。{TEXT}"
    assert compose_input(TEXT, TITLE, 2) == f"{TITLE}。{TITLE}。{TEXT}"
    assert compose_input(TEXT, f"  {TITLE} ", 1) == f"{TITLE}。{TEXT}"
    for title, k in ((TITLE, 0), (None, 2), ("", 2), ("   ", 1)):
        assert compose_input(TEXT, title, k) == TEXT


def test_model_input_and_row_input_follow_title_repeat() -> None:
    assert model_input(TEXT) == segmented_text(normalize(TEXT))
    assert model_input(TEXT, TITLE) == model_input(TEXT)  # title_repeat 0: the text alone
    assert model_input(TEXT, TITLE, 2) == segmented_text(normalize(f"{TITLE}。{TITLE}。{TEXT}"))
    assert row_input({"text": TEXT, "title": TITLE}, 1) == segmented_text(normalize(f"{TITLE}。{TEXT}"))
    assert row_input({"text": TEXT}, 2) == model_input(TEXT)
    assert row_input({"text": TEXT, "title": None}, 2) == model_input(TEXT)


def test_config_defaults_to_text_only_and_accepts_override() -> None:
    assert load_config(overrides=["input.title_repeat=0"]).input.title_repeat == 0
    assert load_config(overrides=["input.title_repeat=2"]).input.title_repeat == 2


def test_manifest_without_title_repeat_gives_text_only_input() -> None:
    manifest = ModelManifest.model_validate(MINIMAL_MANIFEST)
    assert manifest.input.title_repeat == 0
    assert manifest.input.compose(TEXT, TITLE) == TEXT
    with_field = ModelManifest.model_validate({**MINIMAL_MANIFEST, "input": {"title_repeat": 2}})
    assert with_field.input.compose(TEXT, TITLE) == f"{TITLE}。{TITLE}。{TEXT}"


@pytest.mark.slow
def test_trained_title_repeat_is_recorded_and_served_as_trained(tmp_path: Path, taxonomy) -> None:  # type: ignore[no-untyped-def]
    from serving.sessions import OnnxClassifier

    train_tiny(tmp_path / "data", tmp_path / "titled", fields=("track",), overrides=["input.title_repeat=2"])
    manifest = load_manifest(tmp_path / "titled")
    assert manifest.input.title_repeat == 2
    assert manifest.train_config["input"] == {"title_repeat": 2}
    clf = OnnxClassifier(tmp_path / "titled", taxonomy)
    texts = [TEXT, "建议在渝中区增设公交站点，方便市民出行。"]
    titles: list[str | None] = [TITLE, None]
    feeds = clf.preprocess(texts, titles)
    assert [str(x) for x in feeds[:, 0]] == [model_input(t, title, 2) for t, title in zip(texts, titles, strict=True)]
    with_titles = clf.predict_proba(texts, titles)["track"]
    without = clf.predict_proba(texts)["track"]  # the old signature: text alone
    assert not np.array_equal(with_titles[0], without[0])  # the title adds n-grams
    assert np.allclose(with_titles[1], without[1])
    with pytest.raises(ValueError, match="titles"):
        clf.predict_proba(texts, [TITLE])

    train_tiny(tmp_path / "data2", tmp_path / "plain", fields=("track",))
    plain = OnnxClassifier(tmp_path / "plain", taxonomy)
    assert plain.manifest.input.title_repeat == 0
    assert np.array_equal(plain.predict_proba(texts, titles)["track"], plain.predict_proba(texts)["track"])
