"""normalize(): the translate-table cleaning and the memo give the same text as the step-by-step definition."""

from __future__ import annotations

import random
import unicodedata

from triage.text import _FW_TABLE, _clean, _normalize, normalize


def _reference_strip(text: str) -> str:
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn", "Cf"))


def _random_texts(n: int) -> list[str]:
    rng = random.Random(7)
    pools = [(0, 0x2FFFF), (0xFF00, 0xFF70), (0, 0x3100), (0x4E00, 0x4F00), (0x200B, 0x2070), (0, 0x80)]
    return ["".join(chr(rng.randint(*rng.choice(pools))) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_clean_matches_fullwidth_table_and_unicode_categories() -> None:
    for text in _random_texts(2000) + ["a\x00b\tc\n\x7fd", "零\u200b宽\ufeff字符\u202e", "\ue000私用"]:
        assert _clean(text) == _reference_strip(text.translate(_FW_TABLE))


def test_normalize_is_idempotent_and_memo_is_transparent() -> None:
    for text in _random_texts(2000) + ["我在ＡＢＣ公司上班，電話１３８ 0000", " 重庆 市\u3000渝中区 \r\n\r\n\r\n解放碑 "]:
        once = _normalize(text)
        assert normalize(text) == once
        assert _normalize(once) == once
        assert normalize(once) == once  # served from the memo: must equal a fresh normalisation
    assert normalize("我在ＡＢＣ公司上班，電話１３８ 0000") == "我在ABC公司上班，电话138 0000"
