from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.factories import FAKE_ID, FAKE_PHONE, make_petition
from triage.identity import is_valid_id_number, luhn_valid
from triage.schemas import Petition
from triage.text import MAX_TEXT_CHARS


def errors_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Petition.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_petition_minimal_record_is_valid() -> None:
    p = Petition.model_validate(make_petition())
    assert p.text == "小区路灯坏了三个月没人修"
    assert p.id is None and p.petitioner is None


def test_petition_text_is_normalised() -> None:
    p = Petition.model_validate(make_petition("我們小區１２戶"))
    assert p.text == "我们小区12户"


def test_petition_text_required() -> None:
    assert errors_of({}) == [("text", "Field required")]


def test_petition_text_blank_after_normalisation() -> None:
    assert errors_of(make_petition(" \u200b\x00\t ")) == [
        ("text", "Value error, text 为空：去除空白和控制字符后没有内容")
    ]


def test_petition_text_too_long() -> None:
    errs = errors_of(make_petition("长" * (MAX_TEXT_CHARS + 1)))
    assert errs == [("text", f"Value error, text 过长：规范化后 {MAX_TEXT_CHARS + 1} 字，上限 {MAX_TEXT_CHARS} 字")]


def test_petition_text_at_limit_is_accepted() -> None:
    assert len(Petition.model_validate(make_petition("长" * MAX_TEXT_CHARS)).text) == MAX_TEXT_CHARS


def test_petition_bad_id_number_message_does_not_echo_value() -> None:
    bad = FAKE_ID[:-1] + ("0" if FAKE_ID[-1] != "0" else "1")
    errs = errors_of(make_petition(petitioner={"id_number": bad}))
    assert errs == [("petitioner.id_number", "Value error, 身份证号格式或校验位不正确（应为18位，最后一位为校验码）")]
    assert bad not in str(errs)


def test_petition_valid_id_and_phone() -> None:
    p = Petition.model_validate(make_petition(petitioner={"id_number": FAKE_ID.lower(), "phone": "138-0000-1234"}))
    assert p.petitioner is not None
    assert p.petitioner.id_number == FAKE_ID.upper()
    assert p.petitioner.phone == FAKE_PHONE


def test_petition_landline_accepted() -> None:
    p = Petition.model_validate(make_petition(petitioner={"phone": "023-63851234"}))
    assert p.petitioner is not None and p.petitioner.phone == "02363851234"


def test_petition_bad_phone() -> None:
    assert errors_of(make_petition(petitioner={"phone": "12345678"})) == [
        ("petitioner.phone", "Value error, 电话号码格式不正确（手机11位，座机如023-12345678）")
    ]


def test_petition_unknown_petitioner_field_rejected() -> None:
    errs = errors_of(make_petition(petitioner={"nmae": "张三"}))
    assert errs == [("petitioner.nmae", "Extra inputs are not permitted")]


def test_petition_bad_channel() -> None:
    errs = errors_of(make_petition(channel="fax"))
    assert errs[0][0] == "channel"
    assert "'online', 'letter', 'visit' or 'phone'" in errs[0][1]


def test_petition_naive_datetime_rejected() -> None:
    assert errors_of(make_petition(submitted_at="2026-03-01T10:00:00")) == [
        ("submitted_at", "Value error, submitted_at 必须带时区，例如 2026-03-01T10:00:00+08:00")
    ]


def test_petition_headcount_bounds() -> None:
    assert errors_of(make_petition(headcount=0))[0][0] == "headcount"


def test_petition_bad_id_characters() -> None:
    assert errors_of(make_petition(id="CQ 2026/1")) == [("id", "Value error, id 只能包含字母、数字和 . _ : -，长度1–64")]


def test_petition_extra_fields_ignored_in_files() -> None:
    p = Petition.model_validate(make_petition(track="admin_duty", label="城乡建设"))
    assert not hasattr(p, "track")


def test_id_checksum_and_luhn() -> None:
    assert is_valid_id_number(FAKE_ID)
    assert not is_valid_id_number("500106198513151234")  # month 13
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
