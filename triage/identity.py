"""Formats and checksums of personal identifiers (GB 11643 ID numbers, phones, bank cards).

Only validation lives here; masking and keyed hashing of identifiers belong with the
personal-information code. Nothing here logs or returns the identifier in an error.
"""

from __future__ import annotations

import re

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dX]$")
_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE_RE = re.compile(r"^0\d{2,3}-?\d{7,8}$")
_HOTLINE_RE = re.compile(r"^(12345|110|119|120|122|12315|12369)$")


def id_check_digit(first17: str) -> str:
    """Return the GB 11643 check character for the first 17 digits of an ID number."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def is_valid_id_number(value: str) -> bool:
    """True for an 18-character resident ID number with a plausible date and a valid check digit."""
    value = value.upper()
    if not _ID_RE.match(value):
        return False
    return id_check_digit(value[:17]) == value[17]


def is_valid_phone(value: str) -> bool:
    """True for a mainland mobile number, a landline with area code, or a public hotline."""
    compact = re.sub(r"[\s-]", "", value)
    if compact.startswith("+86"):
        compact = compact[3:]
    return bool(_MOBILE_RE.match(compact) or _LANDLINE_RE.match(value.replace(" ", ""))
                or _LANDLINE_RE.match(compact) or _HOTLINE_RE.match(compact))


def luhn_valid(number: str) -> bool:
    """True when a digit string passes the Luhn check (bank cards)."""
    if not number.isdigit() or len(number) < 12:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """Return the digit that makes `partial + digit` Luhn-valid."""
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise ValueError("no Luhn digit found")  # unreachable for digit strings
