"""The rule-file loader rejects every malformed file with a message naming file, rule and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.rules.support import ROOT
from triage.rules import RuleFileError, load_rules

RULES = (ROOT / "data" / "policy" / "rules.toml").read_text(encoding="utf-8")

R01 = ('when = { any_keyword = "@emergency" }\nthen = { priority = "P0", status = "needs_review", '
       'reason = "重大紧急（{hits}）：立即报告值班领导并通报主管部门，不得自动办结（第二十五条）" }')


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replace_r01(tmp_path: Path, new: str) -> Path:
    assert RULES.count(R01) == 1
    return write(tmp_path, RULES.replace(R01, new))


def test_shipped_rule_file_loads(taxonomy) -> None:  # type: ignore[no-untyped-def]
    rules = load_rules(taxonomy)
    ids = [r.id for r in rules.rules]
    assert {f"R{i:02d}" for i in range(1, 20)} <= set(ids)
    assert ids[0] == "R01" and ids[-1] == "R19"
    assert re.fullmatch(r"1\.0\.0\+[0-9a-f]{12}", rules.version)


@pytest.mark.parametrize(("when_then", "expected"), [
    ('when = { keyword_any = ["跳楼"] }\nthen = { priority = "P0" }',
     r"rule R01: when: unknown operator 'keyword_any' \(known: .*any_keyword"),
    ('when = { all = [ { any_keyword = ["跳楼"] }, '
     '{ not = { score_atleast = { field = "track", label = "judicial", value = 0.3 } } } ] }\nthen = { priority = "P0" }',
     r"rule R01: when\.all\[1\]\.not: unknown operator 'score_atleast'"),
    ('when = { score_at_least = { field = "track", label = "judicail", value = 0.3 } }\nthen = { priority = "P0" }',
     r"rule R01: when\.score_at_least\.label: unknown tracks code 'judicail'"),
    ('when = { score_at_least = { field = "track", label = "judicial", value = "tau_nope" } }\nthen = { priority = "P0" }',
     r"when\.score_at_least\.value: unknown threshold 'tau_nope'"),
    ('when = { any_keyword = "@no_such_list" }\nthen = { priority = "P0" }',
     r"when\.any_keyword: unknown keyword list '@no_such_list'"),
    ('when = { any_keyword = ["re:跳(楼"] }\nthen = { priority = "P0" }', r"bad regular expression"),
    ('when = { entity_count = { type = "persons", min = 1 } }\nthen = { priority = "P0" }',
     r"when\.entity_count\.type: unknown entity type 'persons'"),
    ('when = { any_keyword = ["跳楼"], always = true }\nthen = { priority = "P0" }', r"exactly one operator key"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { track = "civil_suit" }',
     r"rule R01: then\.track: unknown tracks code 'civil_suit'"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { department = "hrs" }', r"then\.department: unknown departments code 'hrs'"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { flags = ["urgent"] }', r"then\.flags: unknown flags code 'urgent'"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { escalate = true }', r"rule R01: then: unknown action\(s\) escalate"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { status = "not_accepted" }', r"never decided by rules: write propose"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { status = "merged" }', r"never decided by rules"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { status = "auto" }', r"can only escalate the status"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { propose = { status = "closed", code = "X" } }', r"then\.propose: expected"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { reason = "命中{keyword}" }', r"unknown placeholder\(s\) keyword"),
    ('then = { priority = "P0" }', r"rule R01: missing `when`"),
    ('when = { any_keyword = ["跳楼"] }\nthen = { priority = "P5" }', r"then\.priority: expected P0, P1 or P2"),
    ('when = { link = { status = "closed" } }\nthen = { priority = "P0" }', r"when\.link\.status: unknown link status 'closed'"),
])
def test_loader_rejects(taxonomy, tmp_path: Path, when_then: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = replace_r01(tmp_path, when_then)
    with pytest.raises(RuleFileError) as info:
        load_rules(taxonomy, path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert re.search(expected, message), message
    assert info.value.code == "T210"


def test_loader_rejects_duplicate_rule_id(taxonomy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, RULES.replace('id = "R02"', 'id = "R01"', 1))
    with pytest.raises(RuleFileError, match=r"duplicate rule id 'R01'"):
        load_rules(taxonomy, path)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('taxonomy_version = "2"', 'taxonomy_version = "1"', r"taxonomy_version '1' differs"),
    ("tau_auto = 0.85 ", "tau_auto = 1.5 ", r"thresholds\.tau_auto: must be a number in \[0, 1\]"),
    ("\nadmin_duty = 0.70\n", "\nadmin_dutty = 0.70\n", r"thresholds\.tau_auto_per_track: unknown track 'admin_dutty'"),
    ("\npetition = 0.70\n", "\npetition = 70\n", r"thresholds\.tau_auto_per_track\.petition: must be a number in \[0, 1\]"),
    ('period = "15d"', 'period = "15 days"', r"\[deadlines\.registration\]\.period: period '15 days'"),
    ('act_cues = "@act_land"', 'act_cues = "@act_moon"', r"\[channel_windows\.land_arbitration\]\.act_cues"),
    ("holidays = []", "holidays = [\"2027-01-01\"]", r"\[calendar\]\.holidays: expected a list of TOML dates"),
    ("[guidance.mediation]", "[guidance.conciliation]", r"\[guidance\.conciliation\]: unknown tracks code"),
    ('rules_version = "1.0.0"', 'rules_version = "1.0.0"\nextra_table = 1', r"extra_table: Extra inputs are not permitted"),
    ('id = "R19"', 'id = "R100"', r"rules\.\d+\.id: String should match pattern"),
])
def test_loader_rejects_file_level_errors(taxonomy, tmp_path: Path, old: str, new: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert old in RULES
    with pytest.raises(RuleFileError) as info:
        load_rules(taxonomy, write(tmp_path, RULES.replace(old, new, 1)))
    assert re.search(expected, str(info.value)), str(info.value)


def test_loader_rejects_unparsable_and_missing_files(taxonomy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuleFileError, match="cannot be parsed"):
        load_rules(taxonomy, write(tmp_path, "rules = [ {"))
    with pytest.raises(RuleFileError, match="file not found"):
        load_rules(taxonomy, tmp_path / "missing.toml")


def test_version_changes_with_content(taxonomy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = load_rules(taxonomy)
    changed = load_rules(taxonomy, write(tmp_path, RULES.replace('"跳楼", ', '"跳楼", "跳崖", ', 1)))
    assert base.rules_version == changed.rules_version and base.version != changed.version
