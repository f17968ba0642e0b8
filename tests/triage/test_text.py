from __future__ import annotations

import pytest

from triage.text import MAX_TEXT_CHARS, normalize, segment


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("电话１３８００００１２３４", "电话13800001234"),  # full-width digits
        ("ＡＢＣ公司", "ABC公司"),  # full-width letters
        ("（２０２４）渝０１０６民初１２３４号", "（2024）渝0106民初1234号"),  # CJK parentheses kept
        ("我們社區的業主很不滿意", "我们社区的业主很不满意"),  # 繁体 → 简体
        ("物业费涨价了😡😡", "物业费涨价了😡😡"),  # emoji kept
        ("停水\x00三天\x07了\x1b", "停水三天了"),  # control characters removed
        ("零宽\u200b字符\ufeff", "零宽字符"),  # zero-width and BOM removed
        ("  前后空白\t\t中间  空白  ", "前后空白中间空白"),  # whitespace between CJK dropped
        ("第一段\r\n\r\n\r\n\r\n第二段", "第一段\n\n第二段"),  # CRLF and blank-line runs
        ("ABC  公司", "ABC 公司"),  # runs of spaces collapse
        ("\u3000\u3000尊敬的领导：", "尊敬的领导："),  # ideographic spaces (letter indentation)
    ],
)
def test_normalize_cases(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_is_idempotent() -> None:
    once = normalize("ＡＢＣ\u3000我們\x00  的事  ")
    assert normalize(once) == once


def test_normalize_long_text_keeps_length() -> None:
    text = "我反映的问题是物业乱收费。" * 2000  # 26,000 characters
    out = normalize(text)
    assert len(out) == len(text) > MAX_TEXT_CHARS


def test_segment_keeps_place_names_whole() -> None:
    tokens = segment("渝北区回兴街道的物业公司停水停电")
    assert "渝北区" in tokens
    assert "回兴街道" in tokens


def test_name_scanner_finds_what_one_regular_expression_of_the_names_finds() -> None:
    """Leftmost-longest, non-overlapping, as re.finditer over all names longest first (what it replaced for places)."""
    import random
    import re

    from triage.text import NameScanner

    rng = random.Random(11)
    for _ in range(300):
        names = {"".join(rng.choices("甲乙丙.*", k=rng.randint(1, 4))) for _ in range(rng.randint(1, 6))}
        text = "".join(rng.choices("甲乙丙丁.*", k=rng.randint(0, 30)))
        regex = re.compile("|".join(map(re.escape, sorted(names, key=len, reverse=True))))
        assert NameScanner(names).find(text) == [m.span() for m in regex.finditer(text)]
    assert NameScanner(["", "渝中区"]).find("去渝中区") == [(1, 4)]  # an empty name never matches
