from __future__ import annotations

import pytest

from tests.factories import FAKE_ID
from triage.pii import (
    deidentify,
    is_pii_sensitive,
    mask_entities,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_text,
    petitioner_key,
)
from triage.schemas import Entities, Entity


@pytest.mark.parametrize(("name", "masked"), [("张三", "张*"), ("张小明", "张**"), ("欧阳小明", "欧阳**")])
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_identifiers_follow_the_display_format() -> None:
    assert mask_id_number("500106198506151234") == "500***********1234"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("023-63851234") == "023-****1234"


def test_petitioner_key_is_keyed_and_normalised() -> None:
    a = petitioner_key("id_number", FAKE_ID.lower(), b"secret-1")
    assert a == petitioner_key("id_number", FAKE_ID, b"secret-1")
    assert a != petitioner_key("id_number", FAKE_ID, b"secret-2")
    assert FAKE_ID not in a and len(a) == 64
    assert petitioner_key("phone", "138-0000-1234", b"k") == petitioner_key("phone", "+86 13800001234", b"k")
    with pytest.raises(ValueError):
        petitioner_key("phone", "13800001234", b"")


TEXT = "我叫王小明，电话13812345678，住3栋2单元502室"
ENTS = Entities(items=[
    Entity(type="person", text="王小明", start=2, end=5),
    Entity(type="phone", text="13812345678", start=8, end=19),
])


def test_mask_by_role() -> None:
    clerk = mask_entities(ENTS, "clerk")
    assert [e.text for e in clerk.items] == ["王小明", "138****5678"]
    auditor = mask_entities(ENTS, "auditor")
    assert [e.text for e in auditor.items] == ["王**", "138****5678"]
    supervisor = mask_entities(ENTS, "supervisor")
    assert [e.text for e in supervisor.items] == ["王小明", "13812345678"]
    assert mask_text(TEXT, ENTS.items, "auditor") == "我叫王**，电话138****5678，住3栋2单元502室"


def test_deidentify_removes_identifiers_and_house_numbers() -> None:
    out = deidentify(TEXT + f"，身份证{FAKE_ID}", ENTS.items)
    assert out == "我叫[姓名]，电话[电话]，住[门牌]，身份证[身份证号]"


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [
        ("我母亲做胆囊手术后大出血", True),
        ("我儿子今年8岁，在学校被打", True),
        ("工资打到我的银行卡里", True),
        ("我的电话13812345678", False),
        ("小区路灯坏了", False),
    ],
)
def test_pii_sensitive(text: str, sensitive: bool) -> None:
    assert is_pii_sensitive(text) is sensitive
