"""The change report assembled from processed shards: transitions, per-case rows, bad records, chart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from training.jobs.report import summary_lines, write_report
from training.jobs.triager import OUTPUT_SCHEMA, REPORT_COLUMNS


def _row(seq: int, case_id: str, old: tuple, new: tuple | None, error: str | None = None) -> dict:
    row = {n: None for n in OUTPUT_SCHEMA.names}
    row.update(seq=seq, source="in.jsonl", line=seq + 1, case_id=case_id, error=error,
               old_track=old[0], old_department=old[1], old_status=old[2])
    if new:
        row.update(new_track=new[0], new_department=new[1], new_status=new[2], model_track=new[0], track_score=0.9,
                   model_department=new[1], department_score=0.8, rules_fired="R14", entities_reused=True,
                   priority="P2", suggestions_json="{}", decision_json="{}",
                   changed=any(o is not None and o != n for o, n in zip(old, new, strict=True)))
    return row


def test_write_report_counts_transitions_and_keeps_every_bad_record(tmp_path: Path) -> None:
    parts = []
    rows = [
        [_row(0, "A0", ("admin_duty", "urban", None), ("admin_duty", "urban", "auto")),
         _row(1, "A1", ("admin_duty", "urban", None), ("petition", "urban", "needs_review")),
         _row(2, "A2", ("mediation", "civil", None), None, error="extract: ValueError")],
        [_row(3, "A3", (None, None, None), ("litigation", "justice", "auto")),
         _row(4, "A4", ("admin_duty", "urban", None), ("petition", "housing", "needs_review"))],
    ]
    for k, chunk in enumerate(rows):
        p = tmp_path / f"cases-{k}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, schema=OUTPUT_SCHEMA).drop_columns(
            ["human_confirmed", "suggestions_json", "decision_json", "entities_json", "extractor_version"]), p)
        parts.append(p)
    out = tmp_path / "report"
    out.mkdir()
    staged_bad = [{"source": "in.jsonl", "line": 9, "case_id": None, "stage": "input", "error": "invalid JSON"}]
    counts = write_report(out, parts, staged_bad, {"model": "m@1"}, ["in.jsonl"])

    assert counts.processed == 4 and counts.bad == 2 and counts.changed == 2
    with (out / "transitions.csv").open(encoding="utf-8") as fh:
        trans = {(r["field"], r["old"], r["new"]): int(r["count"]) for r in csv.DictReader(fh)}
    assert trans[("track", "admin_duty", "petition")] == 2
    assert trans[("track", "admin_duty", "admin_duty")] == 1
    assert trans[("track", "(none)", "litigation")] == 1
    assert trans[("department", "urban", "housing")] == 1
    assert sum(n for (f, _, _), n in trans.items() if f == "status") == 4
    cases = pq.read_table(out / "cases.parquet")
    assert cases.column_names == list(REPORT_COLUMNS)
    assert cases.column("case_id").to_pylist() == ["A0", "A1", "A3", "A4"]
    with (out / "cases.csv").open(encoding="utf-8") as fh:
        assert [r["case_id"] for r in csv.DictReader(fh)] == ["A0", "A1", "A3", "A4"]
    with (out / "bad_records.csv").open(encoding="utf-8") as fh:
        bad = list(csv.DictReader(fh))
    assert [(b["line"], b["case_id"], b["stage"]) for b in bad] == [("3", "A2", "extract"), ("9", "", "input")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fields"]["track"] == {"with_old": 3, "changed": 2}
    assert summary["model"] == "m@1"
    assert (out / "transitions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = summary_lines(counts)
    assert lines[0].startswith("processed 4, skipped (bad records) 2, changed 2")
    assert "  admin_duty → petition: 2" in lines
