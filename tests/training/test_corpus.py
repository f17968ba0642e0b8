from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.corpus import (
    SOURCE_KEY,
    PersonaBook,
    build_written,
    connected_groups,
    duty_rows,
    entity_spans,
    fake_card,
    fake_id_number,
    read_jsonl,
    real_splits,
    record_id,
    split_of,
    validate_written_record,
)
from training.datacheck import CheckResult, check_written
from triage.identity import is_valid_id_number, is_valid_phone, luhn_valid


def test_fake_identifiers_are_well_formed_and_deterministic() -> None:
    assert fake_id_number("w1p001", "500106") == fake_id_number("w1p001", "500106")
    for key in ("w1p001", "w2p017", "w5p300"):
        ident = fake_id_number(key, "500243")
        assert ident.startswith("500243") and is_valid_id_number(ident)
        assert luhn_valid(fake_card(key))
    book = PersonaBook(area_codes={"万州区": "500101"})
    # A persona keeps the area code of the first district it was seen with.
    first = book.fill("ID", "w3p009", "万州区")
    assert book.fill("ID", "w3p009", "渝中区") == first and first.startswith("500101")
    assert is_valid_phone(book.fill("PHONE", "w3p009", None))
    assert is_valid_phone(book.fill("TEL", "w3p009", None))


def test_entity_spans_find_every_occurrence() -> None:
    spans, missing = entity_spans("张三找张三，在渝中区", [["person", "张三"], ["place", "渝中区"], ["org", "某公司"]])
    assert [(s["start"], s["end"]) for s in spans] == [(0, 2), (3, 5), (7, 10)]
    assert missing == ["某公司"]


def test_groups_join_duplicates_and_hard_negatives() -> None:
    recs = [{"id": "A"}, {"id": "B", "duplicate_of": "A"}, {"id": "C", "hard_negative_of": "B"}, {"id": "D"}]
    groups = connected_groups(recs, ("duplicate_of", "hard_negative_of"))
    assert groups["A"] == groups["B"] == groups["C"] == "A"
    assert groups["D"] == "D"
    assert split_of("A") == split_of("A") in ("train", "dev", "test")


RAW = [
    {"id": "W9-0001", "style": "online", "channel": "online", "submitted_at": "2025-01-03T09:00:00+08:00",
     "title": None, "text": "我在渝中区上班，电话{PHONE:w9p001}，身份证{ID:w9p001}，公司欠我3000元",
     "petitioner": {"name": "李四", "id_number": "{ID:w9p001}"}, "headcount": 1, "track": "admin_duty",
     "department": "hrss", "co_departments": [], "request_type": "complaint", "flags": [], "district": "渝中区",
     "district_raw": "渝中区", "duplicate_of": None, "hard_negative_of": None,
     "entities": [["place", "渝中区"], ["phone", "{PHONE:w9p001}"], ["id_number", "{ID:w9p001}"], ["amount", "3000元"]]},
    {"id": "W9-0002", "style": "visit", "channel": "visit", "submitted_at": "2025-03-03T09:00:00+08:00",
     "title": None, "text": "来访人李四再次反映渝中区某公司欠薪三千元至今未解决。",
     "petitioner": {"name": "李四", "id_number": "{ID:w9p001}"}, "headcount": 1, "track": "admin_duty",
     "department": "hrss", "co_departments": [], "request_type": "complaint", "flags": ["repeat"],
     "district": "渝中区", "district_raw": "渝中区", "duplicate_of": "W9-0001", "hard_negative_of": None,
     "entities": [["person", "李四"], ["place", "渝中区"], ["amount", "三千元"]]},
]


@pytest.fixture()
def corpus_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "written_w9.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RAW), "utf-8")
    return tmp_path


def test_build_written_fills_placeholders_and_keeps_groups_together(taxonomy, corpus_dir: Path) -> None:  # type: ignore[no-untyped-def]
    report = build_written(taxonomy, corpus_dir)
    assert report.records == 2 and not report.problems
    rows = [r for s in ("train", "dev", "test") for _, r in read_jsonl(corpus_dir / "written" / f"{s}.jsonl")]
    assert {r["split"] for r in rows} == {rows[0]["split"]}
    first = next(r for r in rows if r["id"] == "W9-0001")
    assert "{" not in first["text"]
    assert first["petitioner"]["id_number"] in first["text"]
    assert is_valid_id_number(first["petitioner"]["id_number"])
    assert validate_written_record(first, taxonomy) == []
    second = next(r for r in rows if r["id"] == "W9-0002")
    assert second["petitioner"]["id_number"] == first["petitioner"]["id_number"]


def test_validate_reports_bad_span_and_code(taxonomy) -> None:  # type: ignore[no-untyped-def]
    rec = {"id": "X", "text": "渝中区", "track": "nope", "department": "hrss", "request_type": "complaint",
           "flags": ["loud"], "district": "渝北区", "duplicate_of": None,
           "entities": [{"type": "place", "start": 0, "end": 2, "text": "渝中区"}]}
    problems = validate_written_record(rec, taxonomy)
    assert "unknown track 'nope'" in problems
    assert "unknown flag 'loud'" in problems
    assert "district '渝北区' is not one of the 37" in problems
    assert "entity span 0-2 does not match its text" in problems


def test_check_flags_stale_build_and_cross_split_leak(taxonomy, corpus_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = CheckResult()
    check_written(taxonomy, corpus_dir, result)
    assert any("out of date" in e for e in result.errors)  # nothing was built before
    assert not (corpus_dir / "written").exists()  # the check never writes
    build_written(taxonomy, corpus_dir)
    result = CheckResult()
    check_written(taxonomy, corpus_dir, result)
    assert result.errors == []
    assert any(line.startswith("written corpus: 2 records") for line in result.lines)


@pytest.mark.e2e
def test_data_check_cli_passes_on_the_committed_corpus() -> None:
    from triage_cli.main import app

    result = CliRunner().invoke(app, ["data", "check"])
    assert result.exit_code == 0, result.output
    assert "written corpus:" in result.output
    assert "data check passed" in result.output


def test_actively_selected_real_messages_are_training_only_and_leave_the_splits_alone() -> None:
    rng = random.Random(7)
    sampled = [{"id": f"teddy2020-{i}", "text": "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(60))}
               for i in range(40)]
    before = {r["id"]: s for s, rows in real_splits([dict(r) for r in sampled]).items() for r in rows}
    not_train = next(r for r in sampled if before[r["id"]] != "train")
    in_train = next(r for r in sampled if before[r["id"]] == "train")
    active = [
        {"id": "fuzhou12345-a1", "text": "医疗纠纷：手术后出现并发症，医院拒绝赔偿，请求组织调解。" * 3, "selection": "active"},
        {"id": "fuzhou12345-a2", "text": not_train["text"] + "。", "selection": "active"},
        {"id": "fuzhou12345-a3", "text": in_train["text"] + "。", "selection": "active"},
    ]
    splits = real_splits([dict(r) for r in sampled] + active)
    after = {r["id"]: s for s, rows in splits.items() for r in rows}
    assert {k: v for k, v in after.items() if k in before} == before
    assert after["fuzhou12345-a1"] == "active"
    assert after["fuzhou12345-a2"] == "excluded"          # near-duplicate of a dev/test message
    assert after["fuzhou12345-a3"] == "active"            # near-duplicate of a training message: kept
    assert not {"fuzhou12345-a1", "fuzhou12345-a2", "fuzhou12345-a3"} & {
        r["id"] for s in ("train", "dev", "test") for r in splits.get(s, [])}


def test_real_record_ids_keep_their_form_and_never_collide_across_sources() -> None:
    """Committed labels refer to messages by source + key; the record id derived from them must not change for the
    earlier sources, and the unlabelled board messages (numeric ids, like the replies) get a prefix of their own."""
    assert record_id("teddy2020_messages_labeled", "fj2r-00237") == "teddy2020-fj2r-00237"
    assert record_id("teddy2020_replies", "124055") == "teddy2020-124055"
    assert record_id("fuzhou12345_rivers", "1007") == "fuzhou12345-1007"
    assert len({record_id(source, "23") for source in SOURCE_KEY}) == len(SOURCE_KEY) - 1  # rid keys are never numeric
    assert record_id("teddy2020_unlabeled", "23") != record_id("teddy2020_replies", "23")


def test_duty_rows_give_every_department_one_row_from_its_responsibility_list(taxonomy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = duty_rows(taxonomy)
    assert [r["department"] for r in rows] == list(taxonomy.responsibilities)
    assert len({r["id"] for r in rows}) == len(rows) == len(taxonomy.responsibilities)
    vet = next(r for r in rows if r["department"] == "veterans")
    dept = taxonomy.responsibilities["veterans"]
    assert dept.official_name in vet["text"] and dept.duties in vet["text"]
    assert all(m in vet["text"] for m in dept.typical_matters)
    assert all("track" not in r and "request_type" not in r for r in rows)  # department head only

    from triage_cli.main import app

    out = tmp_path / "duty.jsonl"
    result = CliRunner().invoke(app, ["data", "duty", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == rows
