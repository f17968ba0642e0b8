"""`triage evaluate` on data with a `flags` gold: the flags (and track / department) the whole pipeline decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.model_fixtures import train_tiny, write_jsonl


def test_flag_metrics_by_hand() -> None:
    from training.evaluate import flag_metrics

    gold = [{"repeat"}, {"repeat", "group"}, set(), {"place_unknown"}]
    pred = [{"repeat", "deadline_risk"}, {"group"}, {"repeat"}, {"place_unknown"}]
    m = flag_metrics(gold, pred)
    rep = m["per_class"]["repeat"]  # tp 1, fp 1, fn 1
    assert (rep["precision"], rep["recall"], rep["f1"], rep["support"]) == (0.5, 0.5, 0.5, 2)
    assert m["per_class"]["group"]["f1"] == 1.0 and m["per_class"]["place_unknown"]["f1"] == 1.0
    assert m["per_class"]["risk"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0}
    assert m["micro_f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5, abs=1e-4)  # tp 3, fp 1, fn 1
    assert m["macro_f1"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-4)  # flags with support only
    assert m["exact_set"] == 0.5  # deadline_risk (never labelled) does not count against record 1
    assert "deadline_risk" not in m["per_class"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flags")
    train_tiny(root / "d", root / "m")
    return root / "m"


ROWS: list[dict[str, Any]] = [
    {"id": "f1", "text": "渝中区解放碑的烧烤店油烟很大，我已经打过12345反映，至今没人管，请城管查处。",
     "flags": ["repeat"], "track": "admin_duty", "department": "urban"},
    {"id": "f2", "text": "建议在公交站台加装雨棚，方便市民候车。", "flags": ["place_unknown"],
     "track": "suggestion", "department": "transport"},
    {"id": "f3", "text": "江北区观音桥有餐馆油烟直排，希望城管来管一下。", "flags": [],
     "track": "admin_duty", "department": "urban"},
]


def test_evaluate_scores_the_decided_flags(tiny_model: Path, tmp_path: Path) -> None:
    from training.evaluate import evaluate

    preds = tmp_path / "p.jsonl"
    report = evaluate(tiny_model, write_jsonl(tmp_path / "f.jsonl", ROWS), predictions=preds)
    lines = {x["id"]: x for x in map(json.loads, preds.read_text(encoding="utf-8").splitlines())}
    assert "repeat" in lines["f1"]["decision"]["flags"]
    assert "place_unknown" in lines["f2"]["decision"]["flags"]
    assert "place_unknown" not in lines["f1"]["decision"]["flags"] + lines["f3"]["decision"]["flags"]
    per = report["flags"]["per_class"]
    assert per["repeat"]["support"] == 1 and per["repeat"]["recall"] == 1.0
    assert per["place_unknown"] == {"f1": 1.0, "precision": 1.0, "recall": 1.0, "support": 1}
    got = [lines[r["id"]]["decision"]["track"] for r in ROWS]
    acc = sum(g == r["track"] for g, r in zip(got, ROWS, strict=True)) / len(ROWS)
    assert report["decision"]["n"] == 3 and report["decision"]["track"]["accuracy"] == pytest.approx(acc, abs=1e-4)
    assert sum(report["decision"]["status"].values()) == 3


def test_decisions_do_not_read_the_gold(tiny_model: Path, tmp_path: Path) -> None:
    """Misleading gold (flags, track, district, entities) changes the scores, never the decisions."""
    from training.evaluate import evaluate

    wrong = [{**r, "flags": ["risk", "group"], "track": "judicial", "district": "城口县",
              "entities": [{"type": "org", "start": 0, "end": 2, "text": r["text"][:2]}]} for r in ROWS]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    evaluate(tiny_model, write_jsonl(tmp_path / "right.jsonl", ROWS), predictions=a)
    evaluate(tiny_model, write_jsonl(tmp_path / "wrong.jsonl", wrong), predictions=b)

    def decisions(path: Path) -> list[Any]:
        return [json.loads(x)["decision"] for x in path.read_text(encoding="utf-8").splitlines()]

    assert decisions(a) == decisions(b)


def test_flags_need_the_decided_heads(tmp_path: Path) -> None:
    """A model without track / department / request_type heads cannot decide flags: no `flags` key, no error."""
    from training.evaluate import evaluate

    train_tiny(tmp_path / "d", tmp_path / "m", fields=("track", "department"))
    report = evaluate(tmp_path / "m", write_jsonl(tmp_path / "f.jsonl", ROWS))
    assert "flags" not in report and "track" in report


def test_a_record_the_service_would_refuse_is_counted_not_decided(tiny_model: Path, tmp_path: Path) -> None:
    from training.evaluate import evaluate

    bad = {"id": "f9", "text": "渝中区油烟扰民，请查处。", "channel": "pigeon", "flags": []}  # unknown channel
    report = evaluate(tiny_model, write_jsonl(tmp_path / "f.jsonl", [*ROWS, bad]))
    assert report["decision"]["n"] == 3 and report["decision"]["invalid"] == 1
    assert report["track"]["n"] == 3  # the head scores only rows with a track gold; f9 has none
