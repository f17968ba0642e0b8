"""`triage ingest` and `triage audit verify` as real processes on real files and databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.factories import FAKE_PHONE
from tests.store.builders import SECRET
from triage.store import CaseStore, make_engine

pytestmark = pytest.mark.e2e

CORPUS = ROOT / "data" / "corpus" / "written" / "dev.jsonl"
BAD_ID = "110101199001011235"  # wrong check digit: must never be echoed


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGE_PII_KEY": SECRET.decode(), "TRIAGE_PII_KEY_FILE": str(tmp_path / "pii.key")}
    return subprocess.run([sys.executable, "-m", "triage_cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def _file_with_bad_lines(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    good = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()[:6]]
    lines = [json.dumps(r, ensure_ascii=False) for r in good[:3]]
    lines.append(json.dumps({"id": "BAD-ID", "text": "身份证号写错了", "petitioner": {"id_number": BAD_ID, "phone": FAKE_PHONE}},
                            ensure_ascii=False))  # line 4
    lines.append('{"id": "BROKEN", "text": ')  # line 5: not JSON
    lines.append("")  # line 6: blank lines are skipped, not errors
    lines.append(json.dumps({"text": "没有编号的记录"}, ensure_ascii=False))  # line 7
    lines += [json.dumps(r, ensure_ascii=False) for r in good[3:]]  # lines 8-10
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, good


def test_ingest_cli_reports_bad_lines_and_keeps_good_ones(tmp_path: Path, db_url: str) -> None:
    path, good = _file_with_bad_lines(tmp_path)
    _run(["db", "upgrade", "--url", db_url], tmp_path)
    first = _run(["ingest", str(path), "--db", db_url, "--no-ner", "--batch-size", "2"], tmp_path)
    assert first.returncode == 1, first.stderr
    assert "新增 6，未变 0，冲突 0，错误 3" in first.stdout
    assert "第 4 行：petitioner.id_number: 身份证号格式或校验位不正确" in first.stderr
    assert "第 5 行：不是合法的 JSON" in first.stderr and "第 7 行：缺少 id" in first.stderr
    assert BAD_ID not in first.stderr + first.stdout and FAKE_PHONE not in first.stderr + first.stdout
    store = CaseStore(make_engine(db_url), pii_secret=SECRET)
    assert store.count_cases() == 6
    case = store.get_case(str(good[4]["id"]))
    assert case is not None and case.source == "ingest" and case.status is None and case.text
    assert store.verify_audit().checked == 6
    again = _run(["ingest", str(path), "--db", db_url, "--no-ner"], tmp_path)
    assert again.returncode == 1 and "新增 0，未变 6，冲突 0，错误 3" in again.stdout
    store.engine.dispose()


def test_ingest_cli_with_ner_and_conflict(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'triage.db'}"
    records = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()[:3]]
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    ok = _run(["ingest", str(clean), "--db", db], tmp_path)  # the SQLite default is created automatically
    assert ok.returncode == 0, ok.stderr
    assert "新增 3，未变 0，冲突 0，错误 0" in ok.stdout
    store = CaseStore(make_engine(db), pii_secret=SECRET)
    case = store.get_case(str(records[0]["id"]))
    assert case is not None and case.extractor_version and "+lac" in case.extractor_version  # default: LAC
    assert case.entities and case.entities["items"]  # NER + patterns found something in a real record
    assert case.district is not None
    changed = dict(records[1], text=str(records[1]["text"]) + "补充说明。")
    conflict = tmp_path / "conflict.jsonl"
    conflict.write_text(json.dumps(changed, ensure_ascii=False) + "\n", encoding="utf-8")
    res = _run(["ingest", str(conflict), "--db", db, "--no-ner"], tmp_path)
    assert res.returncode == 1 and "冲突 1" in res.stdout and f"案件 {records[1]['id']} 已以不同内容登记" in res.stderr
    assert store.get_case(str(records[1]["id"])).text == records[1]["text"]  # type: ignore[union-attr]
    store.engine.dispose()


def test_audit_verify_cli_detects_tampering(tmp_path: Path, db_url: str) -> None:
    store = CaseStore(make_engine(db_url), pii_secret=SECRET, auto_upgrade=True)
    for i in range(4):
        store.append_audit(actor="u1", role="reviewer", action="confirm", case_id=f"C-{i}")
    ok = _run(["audit", "verify", "--db", db_url], tmp_path)
    assert ok.returncode == 0 and "intact: 4 events" in ok.stdout
    with store.engine.begin() as conn:  # the test's own database: drop the guard, then tamper
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER audit_events_append_only ON audit_events")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        conn.exec_driver_sql("UPDATE audit_events SET action = 'override' WHERE seq = 2")
    bad = _run(["audit", "verify", "--db", db_url], tmp_path)
    assert bad.returncode == 1 and "BROKEN at seq 2" in bad.stderr
    store.engine.dispose()
