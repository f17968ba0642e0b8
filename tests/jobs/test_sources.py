"""Job input: streaming readers (JSONL, CSV, Parquet via datasets) and validation into staged rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import FAKE_ID, FAKE_PHONE
from training.jobs.sources import RecordError, iter_file, stage_record, stored_entities


def test_iter_file_jsonl_positions_are_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text('{"id": "A1", "text": "路灯坏了"}\n\nnot json\n[1, 2]\n{"id": "A2", "text": "噪音扰民"}\n', encoding="utf-8")
    items = list(iter_file(f))
    assert [i.position for i in items] == [1, 2, 3, 4, 5]
    assert items[0].data == {"id": "A1", "text": "路灯坏了"} and items[0].error is None
    assert items[1].data is None and items[1].error is None  # blank line: neither record nor error
    assert items[2].error is not None and items[2].error.startswith("invalid JSON")
    assert items[3].error == "record is not a JSON object"
    assert items[4].data["id"] == "A2"


def test_iter_file_resumes_after_skip(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps({"id": f"A{i}", "text": "路灯坏了"}) + "\n" for i in range(10)), encoding="utf-8")
    items = list(iter_file(f, skip=7))
    assert [(i.position, i.data["id"]) for i in items] == [(8, "A7"), (9, "A8"), (10, "A9")]


def test_iter_file_csv_reads_strings_and_nested_json(tmp_path: Path) -> None:
    f = tmp_path / "in.csv"
    f.write_text('id,text,headcount,petitioner,track\n'
                 '001,"路灯坏了, ""三个月""",3,"{""phone"": ""13800001234""}",admin_duty\n'
                 '002,噪音扰民,,,\n'
                 '003,油烟,x,,\n', encoding="utf-8")
    items = list(iter_file(f))
    assert [i.position for i in items] == [2, 3, 4]  # the header is row 1
    assert items[0].data == {"id": "001", "text": '路灯坏了, "三个月"', "headcount": 3,
                             "petitioner": {"phone": "13800001234"}, "track": "admin_duty"}
    assert items[1].data == {"id": "002", "text": "噪音扰民"}  # ids stay strings ("001", not 1); empty = absent
    assert items[2].error == "headcount: not an integer"


def test_iter_file_parquet(tmp_path: Path) -> None:
    f = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "P1", "text": "路灯坏了", "track": "admin_duty"},
                                         {"id": "P2", "text": "噪音扰民", "track": None}]), f)
    items = list(iter_file(f))
    assert [(i.position, i.data["id"], i.data["track"]) for i in items] == [(1, "P1", "admin_duty"), (2, "P2", None)]


def test_stage_record_takes_old_labels_from_gold_fields_or_previous_report() -> None:
    rec = {"id": "A1", "text": "小区路灯坏了三个月没人修", "track": "admin_duty", "department": "urban"}
    row = stage_record(rec, seq=0, source="in.jsonl", line=1)
    assert (row["old_track"], row["old_department"], row["old_status"]) == ("admin_duty", "urban", None)
    row = stage_record(rec, seq=0, source="in.jsonl", line=1, previous={"A1": ("petition", "civil", "auto")})
    assert (row["old_track"], row["old_department"], row["old_status"]) == ("petition", "civil", "auto")
    assert json.loads(row["petition"])["text"] == "小区路灯坏了三个月没人修"


@pytest.mark.parametrize(("record", "message"), [
    ({"text": "路灯坏了"}, "id: missing"),
    ({"id": "A 1", "text": "路灯坏了"}, "id: Value error"),
    ({"id": "A1", "text": "   "}, "text: Value error, text 为空"),
    ({"id": "A1", "text": "路灯坏了", "petitioner": {"phone": "1380000"}}, "petitioner.phone: Value error"),
    ({"id": "A1", "text": "路灯坏了", "petitioner": {"id_number": FAKE_ID[:-1] + "0"}}, "petitioner.id_number"),
])
def test_stage_record_errors_name_the_field_never_the_value(record: dict, message: str) -> None:
    with pytest.raises(RecordError) as exc:
        stage_record(record, seq=0, source="in.jsonl", line=1)
    assert message in str(exc.value)
    for value in ("1380000", FAKE_ID[:-1], "A 1"):
        assert value not in str(exc.value)


def test_stored_entities_need_an_extractor_version_and_our_schema() -> None:
    ents = {"items": [{"type": "phone", "text": "138****1234", "start": 0, "end": 11}], "place": {"district": "渝中区"}}
    as_json, version = stored_entities(ents, "entities-1")
    assert version == "entities-1" and json.loads(as_json)["place"]["district"] == "渝中区"
    assert stored_entities(ents, None) == (None, None)  # no version: extract again
    assert stored_entities([{"type": "place", "start": 0, "end": 2, "text": "江津"}], "entities-1") == (None, None)
    assert stored_entities(json.dumps(ents), "entities-1")[1] == "entities-1"  # CSV: JSON text
    assert FAKE_PHONE not in as_json
