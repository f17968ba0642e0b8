"""Test data builders (synthetic petitions only, never real citizen data)."""

from __future__ import annotations

from typing import Any

from triage.identity import id_check_digit

# A fake but well-formed ID number: 500106 (沙坪坝区), born 1985-06-15, sequence 123.
FAKE_ID_17 = "50010619850615123"
FAKE_ID = FAKE_ID_17 + id_check_digit(FAKE_ID_17)
FAKE_PHONE = "13800001234"


def make_petition(text: str = "小区路灯坏了三个月没人修", **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"text": text}
    record.update(overrides)
    return record
