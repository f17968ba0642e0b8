"""`triage rules check` and `triage rules explain` (in-process through the real CLI app)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.rules.support import ROOT, load_examples
from triage_cli.main import app

runner = CliRunner()


def test_rules_check_prints_table() -> None:
    result = runner.invoke(app, ["rules", "check", "--operators"])
    assert result.exit_code == 0, result.output
    assert "rules_version 1.0.0+" in result.output
    assert " R01   emergency" in result.output and " R19   audit_sample" in result.output
    assert "propose not_accepted NR-36 (needs_review)" in result.output
    assert "any_keyword" in result.output and "chinese_calendar" in result.output


def test_rules_check_reports_bad_file(tmp_path: Path) -> None:
    text = (ROOT / "data" / "policy" / "rules.toml").read_text(encoding="utf-8").replace(
        'when = { any_keyword = "@emergency" }', 'when = { any_kw = "@emergency" }')
    bad = tmp_path / "rules.toml"
    bad.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["rules", "check", "--file", str(bad)])
    assert result.exit_code == 1
    assert "rule R01: when: unknown operator 'any_kw'" in result.output


def test_rules_explain_text() -> None:
    result = runner.invoke(app, ["rules", "explain", "--text",
                                 "我们是万州区某工地的18名农民工，包工头跑了，半年工钱40多万元没人管，下周再不给就一起去堵项目大门。",
                                 "--submitted-at", "2026-03-10T09:30:00+08:00"])
    assert result.exit_code == 0, result.output
    assert "✔ R12c" in result.output and "✔ R10" in result.output and "✔ R11" in result.output
    assert "admin_duty / hrss + housing" in result.output and "needs_review" in result.output


def test_rules_explain_file_json(tmp_path: Path) -> None:
    e17 = next(e for e in load_examples() if e["id"] == "E17")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({k: e17[k] for k in ("id", "text", "submitted_at", "petitioner", "links")},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["rules", "explain", "--file", str(src), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["id"] == "E17" and out["decision"]["status"] == "needs_review"
    assert out["decision"]["proposed_status"] == "not_accepted"
    fired = {r["id"] for r in out["rules"] if r["outcome"] == "fired"}
    assert {"R05", "R11", "R20"} <= fired
    assert e17["text"] not in result.stdout  # the trace never echoes the petition


def test_rules_explain_needs_exactly_one_input() -> None:
    result = runner.invoke(app, ["rules", "explain"])
    assert result.exit_code == 1 and "exactly one of --text or --file" in result.output
