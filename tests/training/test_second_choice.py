"""Soft labels from the labellers' second choices (`second_choice_weight`, `LinearTextHead.fit(origin=…)`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.model_fixtures import make_rows, tiny_dataset, write_jsonl


def test_second_choice_rows_copy_only_rows_with_another_label() -> None:
    from training.datasets import second_choice_rows

    rows: list[dict[str, Any]] = [
        {"id": "a", "track": "petition", "second_choice": {"track": "admin_duty", "department": "urban"}},
        {"id": "b", "track": "petition", "second_choice": {"track": "petition"}},  # same label: nothing to add
        {"id": "c", "track": "suggestion", "second_choice": {"department": "urban"}},  # other field only
        {"id": "d", "track": "suggestion", "second_choice": None},
        {"id": "e", "track": "suggestion"},
        {"id": "f", "track": "mediation", "second_choice": "admin_duty"},  # not an object: ignored
        {"id": "g", "track": "discipline", "second_choice": {"track": "admin_duty"}},
    ]
    aux, origin = second_choice_rows(rows, "track")
    assert origin == [0, 6]
    assert [(a["id"], a["track"]) for a in aux] == [("a", "admin_duty"), ("g", "admin_duty")]
    assert rows[0]["track"] == "petition"  # the originals are not modified
    aux_d, origin_d = second_choice_rows(rows, "department")
    assert origin_d == [] and aux_d == []  # no row has a department label for a choice to differ from
    rows_d = [{**r, "department": "housing"} for r in rows]
    assert second_choice_rows(rows_d, "department")[1] == [0, 2]


def test_second_choice_weight_head_override() -> None:
    from training.config import load_config

    config = load_config(overrides=["second_choice_weight=0.2", "heads.track.second_choice_weight=0.6",
                                    "heads.request_type.second_choice_weight=0"])
    assert config.second_choice_for("department") == 0.2  # no override: the top-level value
    assert config.second_choice_for("track") == 0.6
    assert config.second_choice_for("request_type") == 0.0  # an override of 0 is not "unset"
    with pytest.raises(ValueError):
        load_config(overrides=["second_choice_weight=1.5"])


def _head(tmp_path: Path) -> tuple[Any, list[str], list[str]]:
    from training.baseline import LinearTextHead
    from training.config import load_config
    from training.datasets import model_input

    cfg = load_config(tiny_dataset(tmp_path)["config"])
    rows = make_rows(15, 4, "t")
    return LinearTextHead(cfg.members, cfg), [model_input(r["text"]) for r in rows], [r["track"] for r in rows]


def test_auxiliary_rows_follow_their_origin_in_the_calibration_folds(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Whenever an ordinary row is scored for calibration, its auxiliary copy is out of that fit's training rows;
    auxiliary rows are never scored; every ordinary row is scored exactly once."""
    from training.baseline import LinearTextHead

    head, texts, labels = _head(tmp_path)
    n = len(texts)
    aux_of = list(range(0, n, 3))
    flip = {"admin_duty": "litigation", "litigation": "suggestion", "suggestion": "admin_duty"}
    all_texts = texts + [texts[i] for i in aux_of]
    all_labels = labels + [flip[labels[i]] for i in aux_of]
    origin = [-1] * n + aux_of
    calls: list[tuple[np.ndarray, np.ndarray | None]] = []
    real = LinearTextHead._fit_scores

    def spy(self: Any, mats: Any, y: Any, train: Any, evals: Any) -> Any:
        calls.append((np.asarray(train), None if evals is None else np.asarray(evals)))
        return real(self, mats, y, train, evals)

    monkeypatch.setattr(LinearTextHead, "_fit_scores", spy)
    head.fit(all_texts, all_labels, [1.0] * n + [0.5] * len(aux_of), origin=origin)
    final, *folds = calls
    assert set(final[0]) == set(range(len(all_texts)))  # the served classifiers train on every row
    scored = np.concatenate([e for _, e in folds if e is not None])
    assert sorted(scored) == list(range(n))
    for train, evals in folds:
        assert evals is not None
        train_set = set(train.tolist())
        for j, o in enumerate(aux_of):
            assert (n + j in train_set) == (o in train_set)
    assert head.oof_scores_.shape == (n, 3)


def test_no_auxiliary_rows_fit_exactly_as_before(tmp_path: Path) -> None:
    head, texts, labels = _head(tmp_path)
    plain = head.fit(texts, labels)
    t, b, c = plain.temperature_, plain.bias_.copy(), plain.members_[0].coef.copy()
    again = head.fit(texts, labels, origin=[-1] * len(texts))
    assert again.temperature_ == t and np.array_equal(again.bias_, b) and np.array_equal(again.members_[0].coef, c)


def test_bad_origin_is_refused(tmp_path: Path) -> None:
    head, texts, labels = _head(tmp_path)
    with pytest.raises(ValueError, match="origin has"):
        head.fit(texts, labels, origin=[-1])
    chained = [-1] * len(texts)
    chained[1], chained[2] = 0, 1  # an auxiliary row pointing at another auxiliary row
    with pytest.raises(ValueError, match="ordinary rows"):
        head.fit(texts, labels, origin=chained)


def test_train_with_second_choices_moves_probability_to_them(tmp_path: Path) -> None:
    """End to end through `train`: when the labeller of every admin_duty row named litigation as a second choice,
    litigation gets more probability on those texts (uncalibrated: on separable toy data the calibration, fitted
    on the gold labels, can sharpen the difference away); the metrics count the auxiliary rows apart; the ONNX
    graph keeps parity."""
    from serving.sessions import OnnxClassifier
    from training.train import TrainRequest, train
    from triage.taxonomy import load_taxonomy

    files = tiny_dataset(tmp_path / "d")
    rows = make_rows(20, 1, "tr")
    unsure = [r["id"] for r in rows if r["track"] == "admin_duty"]
    soft = [{**r, "second_choice": {"track": "litigation"}} if r["id"] in unsure else r for r in rows]
    data = write_jsonl(tmp_path / "soft.jsonl", soft)
    texts = [r["text"] for r in rows if r["id"] in unsure]

    def fit(out: str, weight: float) -> tuple[Any, float]:
        m = train(TrainRequest(data=[data], fields=["track"], out_dir=tmp_path / out, dev=[files["dev"]],
                               config_path=files["config"],
                               overrides=[f"second_choice_weight={weight}", 'calibration.method="none"']))
        proba = OnnxClassifier(tmp_path / out, load_taxonomy()).predict_proba(texts)["track"]
        return m, float(proba[:, m.heads["track"].labels.index("litigation")].mean())

    m0, p0 = fit("hard", 0.0)
    m1, p1 = fit("soft", 1.0)
    assert "second_choice_rows" not in m0.metrics["track"]
    assert m1.metrics["track"]["second_choice_rows"] == len(unsure)
    assert m1.metrics["track"]["train_rows"] == m0.metrics["track"]["train_rows"] == len(rows)
    assert m1.heads["track"].parity_max_abs_diff < 1e-4
    assert p1 > p0 + 0.05


def test_unknown_second_choice_is_refused_with_the_row(tmp_path: Path) -> None:
    from training.train import TrainRequest, train

    files = tiny_dataset(tmp_path / "d")
    rows = make_rows(20, 1, "tr")
    rows[3] = {**rows[3], "second_choice": {"track": "no_such_track"}}
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=f"second_choice labels not in taxonomy.*no_such_track.*{rows[3]['id']}"):
        train(TrainRequest(data=[data], fields=["track"], out_dir=tmp_path / "m", dev=[files["dev"]],
                           config_path=files["config"], overrides=["second_choice_weight=0.5"]))
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.*"))  # nothing half-written, no temp dir
