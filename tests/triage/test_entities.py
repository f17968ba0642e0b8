from __future__ import annotations

from datetime import date

import pytest

from tests.factories import FAKE_ID
from triage.entities import EntityExtractor, amount_in_yuan, normalize_date
from triage.schemas import Petition


@pytest.fixture(scope="module")
def extractor(taxonomy):  # type: ignore[no-untyped-def]
    return EntityExtractor(taxonomy.gazetteer)


def extract(extractor: EntityExtractor, text: str, at: str = "2025-06-01T10:00:00+08:00"):  # type: ignore[no-untyped-def]
    p = Petition(text=text, submitted_at=at)
    return extractor.extract(p.text, p)


@pytest.mark.parametrize(
    ("surface", "value"),
    [("9600元", 9600), ("1.2万元", 12000), ("四十多万", 400000), ("三千六百块", 3600), ("一万六", 16000),
     ("四千五", 4500), ("3000到5000元", "3000-5000")],
)
def test_amount_in_yuan(surface: str, value: float | str) -> None:
    assert amount_in_yuan(surface) == value


@pytest.mark.parametrize(
    ("surface", "iso"),
    [("2023年5月", "2023-05"), ("2023年5月12日", "2023-05-12"), ("去年3月", "2024-03"), ("上个月", "2025-05"),
     ("春节前", "2025-01-29"), ("8月", "2024-08"), ("今年1月", "2025-01")],
)
def test_normalize_date_relative_to_submission(surface: str, iso: str) -> None:
    assert normalize_date(surface, date(2025, 6, 1)) == iso


def test_identifiers_are_found_and_validated(extractor: EntityExtractor) -> None:
    bad = FAKE_ID[:-1] + ("0" if FAKE_ID[-1] != "0" else "1")
    e = extract(extractor, f"身份证{FAKE_ID}，旧证{bad}，电话138-0000-1234，座机023-63851234，"
                           "案号（2024）渝0106民初1234号，车牌渝A·12345")
    by_type = {(i.type, i.text): i for i in e.items}
    assert by_type[("id_number", FAKE_ID)].valid is True
    assert by_type[("id_number", bad)].valid is False  # reported as suspect, not dropped
    assert ("phone", "138-0000-1234") in by_type and ("phone", "023-63851234") in by_type
    assert ("case_number", "（2024）渝0106民初1234号") in by_type
    assert ("plate", "渝A·12345") in by_type


@pytest.mark.parametrize(
    ("text", "district", "raw"),
    [
        ("渝北区回兴街道某小区物业停水", "两江新区", "渝北区"),
        ("渝北区统景镇一家农家乐", "北碚区", "渝北区"),
        ("我是开县人，在那边打工", "开州区", "开县"),
        ("我家住南岸区，在沙坪坝区一家公司上班，公司欠薪", "沙坪坝区", "沙坪坝区"),
        ("石柱县西沱镇的砂石厂", "石柱土家族自治县", "石柱县"),
    ],
)
def test_place_resolution(extractor: EntityExtractor, text: str, district: str, raw: str) -> None:
    place = extract(extractor, text).place
    assert (place.district, place.district_raw) == (district, raw)


def test_no_place_gives_none(extractor: EntityExtractor) -> None:
    assert extract(extractor, "A市A2区某小区物业乱收费").place.district is None


def test_headcount_and_official(extractor: EntityExtractor) -> None:
    e = extract(extractor, "我们12户业主联名反映，王书记一直不管")
    assert [(i.type, i.text, i.value) for i in e.items if i.type == "headcount"] == [("headcount", "我们12户业主", 12)]
    assert ("official", "王书记") in [(i.type, i.text) for i in e.items]


class WordTagger:
    """A segmenter stand-in: fixed (word, label) lists per text, as LAC would return them."""

    version = "fake-words"

    def __init__(self, sentences: dict[str, list[tuple[str, str]]]) -> None:
        self._words = {}
        for text, words in sentences.items():
            assert "".join(w for w, _ in words) == text
            spans, pos = [], 0
            for w, lab in words:
                spans.append((pos, pos + len(w), lab))
                pos += len(w)
            self._words[text] = spans

    def words(self, text: str) -> list[tuple[int, int, str]]:
        return self._words[text]

    def tag(self, text: str) -> list[tuple[int, int, str]]:
        return [w for w in self._words[text] if w[2] in ("PER", "LOC", "ORG", "TIME")]


ORG_SENTENCES = {
    "我在江北区石马河街道金港湾小区住，物业公司乱收费": [
        ("我", "r"), ("在", "p"), ("江北区", "LOC"), ("石马河街道", "LOC"), ("金港湾", "LOC"), ("小区", "n"), ("住", "v"),
        ("，", "w"), ("物业", "n"), ("公司", "n"), ("乱", "d"), ("收费", "v")],
    "找了区信访办和区公安分局，督促法院执行": [
        ("找", "v"), ("了", "u"), ("区信访", "ORG"), ("办", "v"), ("和", "c"), ("区公安", "ORG"), ("分局", "n"), ("，", "w"),
        ("督促", "v"), ("法院", "n"), ("执行", "v")],
    "原国营川东船厂的工人，派出所说去找镇政府": [
        ("原", "a"), ("国营川东", "ORG"), ("船厂", "n"), ("的", "u"), ("工人", "n"), ("，", "w"), ("派出所", "n"), ("说", "v"),
        ("去找", "v"), ("镇政府", "ORG")],
}


@pytest.fixture(scope="module")
def word_extractor(taxonomy):  # type: ignore[no-untyped-def]
    # org_tagger=None: these are the rule candidates the learned tagger (tests/triage/test_orgs.py) chooses from
    return EntityExtractor(taxonomy.gazetteer, WordTagger(ORG_SENTENCES), departments=taxonomy.responsibilities.values(),
                           org_tagger=None)


@pytest.mark.parametrize(
    ("text", "orgs"),
    [
        # the residential name without the places before it (they are place entities); a description is no name
        ("我在江北区石马河街道金港湾小区住，物业公司乱收费", ["金港湾小区"]),
        # LAC cuts the body word off (区信访|办): taken back; a bare type noun (法院) is not an organisation
        ("找了区信访办和区公安分局，督促法院执行", ["区信访办", "区公安分局"]),
        # 原 (former) is not part of the name; 派出所 alone is bare, 镇政府 has its level
        ("原国营川东船厂的工人，派出所说去找镇政府", ["国营川东船厂", "镇政府"]),
    ],
)
def test_organisations_from_words(word_extractor: EntityExtractor, text: str, orgs: list[str]) -> None:
    assert [e.text for e in extract(word_extractor, text).items if e.type == "org"] == orgs


def test_department_names_are_organisations(taxonomy) -> None:  # type: ignore[no-untyped-def]
    x = EntityExtractor(taxonomy.gazetteer, departments=taxonomy.responsibilities.values())
    e = extract(x, "向九龙坡区住房和城乡建设委员会反映，又找了区人力社保局")
    assert [i.text for i in e.items if i.type == "org"] == ["九龙坡区住房和城乡建设委员会", "区人力社保局"]
    assert ("place", "九龙坡区") in [(i.type, i.text) for i in e.items]  # the district stays a place of its own


def test_bare_type_nouns_are_not_organisations(extractor: EntityExtractor) -> None:
    e = extract(extractor, "我去了法院，又去了派出所和检察院")
    assert e.of_type("org") == []
