from __future__ import annotations

import json
from pathlib import Path

from training.agreement import agreement, disagreements


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_agreement_and_kappa_per_field(tmp_path: Path) -> None:
    base = {"department": "hrss", "request_type": "complaint"}
    write(tmp_path / "written" / "train.jsonl", [
        {"id": "W1-0001", "track": "admin_duty", "flags": ["repeat"], **base},
        {"id": "W1-0002", "track": "arbitration", "flags": [], **base},
        {"id": "W1-0003", "track": "admin_duty", "flags": [], **base},
        {"id": "W1-0004", "track": "arbitration", "flags": [], **base},
    ])
    second = [
        {"source": "written", "key": "W1-0001", "track": "admin_duty", "flags": ["repeat"], **base},
        {"source": "written", "key": "W1-0002", "track": "arbitration", "flags": [], **base},
        {"source": "written", "key": "W1-0003", "track": "arbitration", "flags": [], **base},
        {"source": "written", "key": "W1-0004", "track": "arbitration", "flags": [], **base},
    ]
    write(tmp_path / "agreement" / "labels_R2.jsonl", second)
    report = agreement(tmp_path)["written"]
    assert report["n"] == 4
    assert report["track"]["agreement"] == 0.75
    # p_o = 0.75, p_e = (2/4 * 1/4) + (2/4 * 3/4) = 0.5 → kappa 0.5
    assert report["track"]["kappa"] == 0.5
    # scored as a model is: admin_duty P 1 R 0.5 → F1 0.667, arbitration P 0.667 R 1 → F1 0.8; mean 0.733
    assert report["track"]["macro_f1"] == 0.733
    assert report["department"] == {"agreement": 1.0, "kappa": None, "macro_f1": 1.0}  # one class only: undefined
    assert report["flag:repeat"]["agreement"] == 1.0
    assert disagreements(tmp_path, "track") == [
        {"source": "written", "key": "W1-0003", "first": "admin_duty", "second": "arbitration", "second_note": None}
    ]


def test_actively_selected_messages_are_reported_apart(tmp_path: Path) -> None:
    base = {"department": "hrss", "request_type": "complaint", "flags": []}
    write(tmp_path / "real" / "labels_L1.jsonl", [{"source": "fuzhou12345_rivers", "key": "1", "track": "admin_duty", **base}])
    write(tmp_path / "real" / "labels_A1.jsonl", [
        {"source": "fuzhou12345_rivers", "key": "2", "track": "arbitration", "selection": "active", **base},
        {"source": "fuzhou12345_rivers", "key": "3", "track": "mediation", "selection": "active", **base}])
    write(tmp_path / "real" / "labels_L3.jsonl", [{"source": "fuzhou12345_rivers", "key": "4", "track": "petition", **base}])
    write(tmp_path / "agreement" / "labels_R5.jsonl", [
        {"source": "fuzhou12345_rivers", "key": k, "track": t, **base}
        for k, t in (("1", "admin_duty"), ("2", "arbitration"), ("3", "litigation"), ("4", "suggestion"))])
    report = agreement(tmp_path)
    assert report["real"]["n"] == 2 and report["real"]["track"]["agreement"] == 0.5
    assert report["real"]["by_first_labeller"] == {
        "labels_L1.jsonl": {"n": 1, "track": 1.0, "department": 1.0, "request_type": 1.0},
        "labels_L3.jsonl": {"n": 1, "track": 0.0, "department": 1.0, "request_type": 1.0}}
    assert report["real_active"]["n"] == 2 and report["real_active"]["track"]["agreement"] == 0.5
