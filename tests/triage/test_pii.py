from __future__ import annotations

import pytest

from tests.factories import FAKE_ID
from triage.pii import (
    ROLES,
    UNMASKED,
    deidentify,
    is_pii_sensitive,
    mask_address,
    mask_entities,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_result,
    mask_text,
    petitioner_key,
    sensitive_categories,
)
from triage.schemas import Decision, Entities, Entity, TriageResult


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
    assert mask_text(TEXT, ENTS.items, "auditor") == "我叫王**，电话138****5678，住*栋*单元***室"
    assert mask_text(TEXT, ENTS.items, "supervisor") == TEXT


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


@pytest.mark.parametrize(
    ("text", "categories"),
    [
        ("来电人儿子在某小学读五年级（11岁），被同学打骂", ["minor"]),
        ("冉某（13岁）辍学在家", ["minor"]),
        ("我1985年十九岁进厂，38岁下岗", []),
        ("其子癫痫近期在看守所发作过一次", ["health"]),
        ("被流浪狗咬伤，打了狂犬疫苗", ["health"]),
        ("工资打到我的银行卡里，孩子8岁住院了", ["health", "minor", "financial"]),
    ],
)
def test_sensitive_categories(text: str, categories: list[str]) -> None:
    assert sensitive_categories(text) == categories


def test_bank_card_entity_is_financial() -> None:
    ents = Entities(items=[Entity(type="bank_card", text="6222020000000000000", start=2, end=21)])
    assert sensitive_categories("转账6222020000000000000", ents) == ["financial"]


def test_mask_address_keeps_community_and_street() -> None:
    assert mask_address("金港湾小区3栋2单元502室") == "金港湾小区*栋*单元***室"
    assert mask_address("渝中区中山一路12号附3号") == "渝中区中山一路**号附*号"
    assert mask_address("5月3号在1号线上") == "5月3号在1号线上"  # dates and metro lines are not addresses


FULL_TEXT = f"我叫王小明，身份证{FAKE_ID}，电话13812345678，卡号6222020000000000000，住金港湾小区3栋2单元502室，村支书刘德明收钱"
FULL = Entities(items=[
    Entity(type="person", text="王小明", start=2, end=5),
    Entity(type="id_number", text=FAKE_ID, start=9, end=27),
    Entity(type="phone", text="13812345678", start=30, end=41),
    Entity(type="bank_card", text="6222020000000000000", start=44, end=63),
    Entity(type="org", text="金港湾小区3栋2单元502室", start=65, end=79),
    Entity(type="official", text="村支书刘德明", start=80, end=86),
])


def _result(flags: list[str]) -> TriageResult:
    return TriageResult(petition_id="T-1", normalized_text=FULL_TEXT, entities=FULL, suggestions={}, links=[],
                        decision=Decision(track="discipline", department="discipline_org", status="needs_review", flags=flags))


def test_fixture_offsets_match() -> None:
    assert all(FULL_TEXT[e.start:e.end] == e.text for e in FULL.items)


@pytest.mark.parametrize("role", ROLES)
def test_mask_result_hides_every_personal_value_the_role_may_not_see(role: str) -> None:
    masked = mask_result(_result([]), role)
    raw_values = {"person": "王小明", "id_number": FAKE_ID, "phone": "13812345678", "bank_card": "6222020000000000000",
                  "official": "刘德明", "address": "3栋2单元502室"}
    for kind, value in raw_values.items():
        shown = value in masked.normalized_text or any(value in e.text for e in masked.entities.items)
        assert shown is (kind in UNMASKED[role]), (role, kind)
    assert all(e.value is None for e in masked.entities.items if e.type in ("phone", "id_number"))


def test_confidential_case_hides_the_petitioner_from_clerk_but_not_the_accused() -> None:
    clerk = mask_result(_result(["confidential"]), "clerk")
    assert "王小明" not in clerk.normalized_text and "王**" in clerk.normalized_text
    assert "刘德明" in clerk.normalized_text  # the accused official, needed to route to 纪委
    supervisor = mask_result(_result(["confidential"]), "supervisor")
    assert supervisor.normalized_text == FULL_TEXT


def test_unknown_role_sees_nothing_personal() -> None:
    masked = mask_result(_result([]), "guest")
    assert "王小明" not in masked.normalized_text and "13812345678" not in masked.normalized_text
