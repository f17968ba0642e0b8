"""`triage reclassify` over petition files: real model, real rule file, real files.

Input: the first records of the written corpus dev split (writers' petitions, no real citizens)
plus bad lines. The engine tests check that local, process-pool and Ray (local mode) runs give
byte-identical reports; the kill test SIGKILLs a running CLI and resumes it.
"""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from training.jobs import ReclassifyRequest, reclassify
from training.jobs.reclassify import CHECKPOINT_FILE, WORK_DIR, JobConflictError

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "data" / "corpus" / "written" / "dev.jsonl"
AS_OF = datetime.fromisoformat("2026-11-26T09:00:00+08:00")
REPORT_FILES = ("cases.csv", "transitions.csv", "bad_records.csv", "summary.json")
BAD_LINES = ["not json", "", json.dumps({"id": "BAD-1", "text": "  "}), json.dumps({"text": "没有编号的信访件"})]


def corpus(n: int) -> list[dict]:
    lines = DEV.read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def write_input(path: Path, records: list[dict], bad: bool = True) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if bad:
        lines[10:10] = BAD_LINES  # lines 11–14
        lines.append(json.dumps(records[0], ensure_ascii=False))  # a duplicate id at the end
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_report(a: Path, b: Path) -> None:
    assert pq.read_table(a / "cases.parquet").equals(pq.read_table(b / "cases.parquet"))
    for name in REPORT_FILES:
        assert filecmp.cmp(a / name, b / name, shallow=False), name


def pii_values(records: list[dict]) -> set[str]:
    out = set()
    for r in records:
        for v in (r.get("petitioner") or {}).values():
            if isinstance(v, str) and len(v) >= 2:
                out.add(v)
    return out


def test_onnx_probabilities_do_not_depend_on_the_batch(taxonomy) -> None:  # type: ignore[no-untyped-def]
    """Why every engine gives identical reports whatever its batching."""
    from serving.sessions import OnnxClassifier

    clf = OnnxClassifier(ROOT / "models" / "default", taxonomy)
    texts = [r["text"] for r in corpus(40)]
    whole = clf.predict_proba(texts)
    shifted = clf.predict_proba(texts[5:] + texts[:5])
    single = [clf.predict_proba([t]) for t in texts[:8]]
    for fld, p in whole.items():
        assert np.array_equal(p, np.concatenate([shifted[fld][-5:], shifted[fld][:-5]]))
        assert np.array_equal(p[:8], np.concatenate([s[fld] for s in single]))


def test_reclassify_file_job_reports_changes_and_bad_records(tmp_path: Path) -> None:
    records = corpus(60)
    data = write_input(tmp_path / "in.jsonl", records)
    out = tmp_path / "report"
    req = ReclassifyRequest(out_dir=out, data=[data], ner=False, checkpoint_every=25, as_of=AS_OF, progress=False)
    summary = reclassify(req)

    assert summary.counts is not None and summary.counts.processed == 60 and summary.counts.bad == 4
    cases = pq.read_table(out / "cases.parquet").to_pylist()
    assert [c["case_id"] for c in cases] == [r["id"] for r in records]
    by_id = {r["id"]: r for r in records}
    for c in cases:
        gold = by_id[c["case_id"]]
        assert (c["old_track"], c["old_department"], c["old_status"]) == (gold["track"], gold["department"], None)
        assert c["new_track"] and c["new_department"] and c["new_status"] in ("auto", "needs_review")
        assert 0.0 <= c["track_score"] <= 1.0 and c["rules_fired"]
        assert c["changed"] == (c["old_track"] != c["new_track"] or c["old_department"] != c["new_department"])
    assert [c["line"] for c in cases[9:11]] == [10, 15]  # positions are line numbers, after the 4 bad lines

    bad = (out / "bad_records.csv").read_text(encoding="utf-8").splitlines()
    assert bad[0] == "source,line,case_id,stage,error"
    assert [tuple(b.split(",")[:3]) for b in bad[1:]] == [
        ("in.jsonl", "11", ""), ("in.jsonl", "13", "BAD-1"), ("in.jsonl", "14", ""), ("in.jsonl", "65", records[0]["id"])]
    trans = (out / "transitions.csv").read_text(encoding="utf-8").splitlines()
    track_total = sum(int(line.split(",")[3]) for line in trans[1:] if line.startswith("track,"))
    assert track_total == 60
    summary_json = json.loads((out / "summary.json").read_text())
    assert summary_json["processed"] == 60 and summary_json["changed"] == summary.counts.changed
    assert (out / "transitions.png").stat().st_size > 10_000

    # Labels and ids only: no petitioner names, phones or ID numbers, no text in any report file.
    secrets = pii_values(records)
    assert secrets, "the input should carry petitioner data for this check"
    for f in out.iterdir():
        if f.suffix in (".csv", ".json"):
            body = f.read_text(encoding="utf-8")
            assert not [s for s in secrets if s in body], f.name
            assert records[3]["text"][:20] not in body
    assert not list((out / WORK_DIR).glob("input-*")), "staged input (with personal data) must be deleted"

    # The same job again changes nothing; another job in the same directory is refused.
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    again = reclassify(req)
    assert again.already_complete and "nothing to do" in again.lines[0]
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    with pytest.raises(JobConflictError):
        reclassify(ReclassifyRequest(out_dir=out, data=[data], ner=False, reextract=True, as_of=AS_OF, progress=False))


def test_reclassify_reuses_entities_of_the_current_extractor(tmp_path: Path, taxonomy) -> None:  # type: ignore[no-untyped-def]
    from triage.entities import EntityExtractor
    from triage.schemas import Petition

    extractor = EntityExtractor(taxonomy.gazetteer, None)  # --no-ner: patterns + gazetteer
    records = corpus(12)
    for i, r in enumerate(records):
        p = Petition.model_validate(r)
        r["entities"] = extractor.extract(p.text, p).model_dump(mode="json")
        r["extractor_version"] = extractor.version if i % 3 else "entities-0"  # every third one is stale
    data = write_input(tmp_path / "in.jsonl", records, bad=False)
    reused = reclassify(ReclassifyRequest(out_dir=tmp_path / "a", data=[data], ner=False, as_of=AS_OF, progress=False))
    forced = reclassify(ReclassifyRequest(out_dir=tmp_path / "b", data=[data], ner=False, reextract=True, as_of=AS_OF,
                                          progress=False))
    assert reused.counts is not None and forced.counts is not None
    assert reused.counts.entities_reused == 8 and forced.counts.entities_reused == 0
    a = pq.read_table(tmp_path / "a" / "cases.parquet").drop_columns(["entities_reused"])
    b = pq.read_table(tmp_path / "b" / "cases.parquet").drop_columns(["entities_reused"])
    assert a.equals(b)  # the stored entities are what the extractor gives: same decisions


def test_reclassify_previous_report_gives_the_old_labels(tmp_path: Path) -> None:
    records = corpus(20)
    data = write_input(tmp_path / "in.jsonl", records, bad=False)
    first = tmp_path / "first"
    reclassify(ReclassifyRequest(out_dir=first, data=[data], ner=False, as_of=AS_OF, progress=False))
    second = reclassify(ReclassifyRequest(out_dir=tmp_path / "second", data=[data], previous=first, ner=False,
                                          as_of=AS_OF, progress=False))
    assert second.counts is not None and second.counts.changed == 0  # same model, same rules: nothing moved
    rows = pq.read_table(tmp_path / "second" / "cases.parquet").to_pylist()
    assert all(r["old_status"] == r["new_status"] for r in rows)


@pytest.mark.slow
def test_process_pool_gives_the_same_report(tmp_path: Path) -> None:
    data = write_input(tmp_path / "in.jsonl", corpus(120))
    common = dict(data=[data], ner=False, checkpoint_every=40, batch_size=16, as_of=AS_OF, progress=False)
    reclassify(ReclassifyRequest(out_dir=tmp_path / "one", **common))
    reclassify(ReclassifyRequest(out_dir=tmp_path / "pool", workers=2, **common))
    assert_same_report(tmp_path / "one", tmp_path / "pool")


@pytest.mark.slow
def test_ray_local_mode_gives_the_same_report(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="install the ray extra: pip install -e '.[ray]'")
    data = write_input(tmp_path / "in.jsonl", corpus(120))
    common = dict(data=[data], ner=False, checkpoint_every=40, batch_size=16, as_of=AS_OF, progress=False)
    reclassify(ReclassifyRequest(out_dir=tmp_path / "local", **common))
    ray_run = reclassify(ReclassifyRequest(out_dir=tmp_path / "ray", engine="ray", workers=2, **common))
    assert ray_run.counts is not None and ray_run.counts.processed == 120
    assert_same_report(tmp_path / "local", tmp_path / "ray")


def _cli(data: Path, out: Path) -> list[str]:
    # With NER (the slow stage, ~10+ ms per petition) so the job is still running when it is killed.
    return [sys.executable, "-m", "triage_cli.main", "reclassify", "--data", str(data), "--out", str(out),
            "--checkpoint-every", "40", "--batch-size", "20", "--as-of", "2026-11-26T09:00:00+0800", "--no-progress"]


@pytest.mark.slow
@pytest.mark.e2e
def test_killed_job_resumes_to_the_same_report(tmp_path: Path) -> None:
    data = write_input(tmp_path / "in.jsonl", corpus(400))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    checkpoint = killed / WORK_DIR / CHECKPOINT_FILE
    proc = subprocess.Popen(_cli(data, killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state: dict = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            state = json.loads(checkpoint.read_text())
            if state.get("processed", 0) >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= state["processed"] < len(state["shards"]) and not state["done"]
    assert not (killed / "cases.parquet").exists()

    resumed = subprocess.run(_cli(data, killed), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(resumed)" in resumed.stdout
    run = json.loads((killed / "run.json").read_text())
    assert run["resumed"] and run["processed_now"] < 400  # the shards done before the kill were not redone

    uninterrupted = subprocess.run(_cli(data, clean), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    assert_same_report(killed, clean)


def test_reclassify_csv_and_parquet_inputs_give_the_jsonl_results(tmp_path: Path) -> None:
    import csv

    import pyarrow as pa

    records = corpus(15)
    flat = [{"id": r["id"], "title": r.get("title") or "", "text": r["text"], "submitted_at": r.get("submitted_at") or "",
             "channel": r.get("channel") or "", "petitioner": json.dumps(r.get("petitioner") or {}, ensure_ascii=False),
             "track": r["track"], "department": r["department"]} for r in records]
    with (tmp_path / "in.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(flat[0]))
        w.writeheader()
        w.writerows(flat)
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in ("id", "title", "text", "submitted_at", "channel",
                                                                  "petitioner", "track", "department")} for r in records]),
                   tmp_path / "in.parquet")  # petitioner as a struct column
    write_input(tmp_path / "in.jsonl", records, bad=False)
    labels = ["case_id", "old_track", "new_track", "old_department", "new_department", "new_status", "rules_fired"]
    results = {}
    for name in ("in.jsonl", "in.csv", "in.parquet"):
        out = tmp_path / name.replace(".", "_")
        reclassify(ReclassifyRequest(out_dir=out, data=[tmp_path / name], ner=False, as_of=AS_OF, progress=False))
        results[name] = pq.read_table(out / "cases.parquet").select(labels).to_pylist()
        assert len(results[name]) == 15
    assert results["in.csv"] == results["in.jsonl"] == results["in.parquet"]
    assert [r["line"] for r in pq.read_table(tmp_path / "in_csv" / "cases.parquet").to_pylist()][:2] == [2, 3]
