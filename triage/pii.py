"""Personal information: masking by role, keyed petitioner hashes, de-identified text, pii_sensitive.

DOMAIN.md §4 (个人信息保护法): identifiers are matched through keyed HMAC-SHA256 hashes, never stored
in logs or metrics; responses show masked values unless the role needs the raw ones; anything
that leaves the trusted store (exports, training data) uses the de-identified text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Literal

from triage.schemas import Entities, Entity

Role = Literal["clerk", "reviewer", "supervisor", "admin", "auditor"]

# Which roles see which entity types unmasked. Everyone else gets the masked form.
UNMASKED: dict[str, frozenset[str]] = {
    "clerk": frozenset({"person", "official"}),  # registration needs the name to address the reply
    "reviewer": frozenset({"person", "official"}),
    "supervisor": frozenset({"person", "official", "phone", "id_number", "bank_card", "plate"}),
    "admin": frozenset(),
    "auditor": frozenset(),
}
IDENTIFIER_TYPES = ("person", "official", "phone", "id_number", "bank_card", "plate")


def mask_name(name: str) -> str:
    """张三 → 张*, 张小明 → 张**, 欧阳小明 → 欧阳** (compound surnames keep two characters)."""
    if len(name) <= 1:
        return "*"
    keep = 2 if len(name) >= 4 else 1
    return name[:keep] + "*" * (len(name) - keep)


def mask_id_number(value: str) -> str:
    """500106198506151234 → 500***********1234."""
    v = re.sub(r"\s", "", value)
    return v[:3] + "*" * max(0, len(v) - 7) + v[-4:] if len(v) > 7 else "*" * len(v)


def mask_phone(value: str) -> str:
    """13812345678 → 138****5678; 023-63851234 → 023-****1234."""
    digits = re.sub(r"\D", "", value)
    if re.fullmatch(r"1\d{10}", digits[-11:]) and len(digits) >= 11:
        d = digits[-11:]
        return d[:3] + "****" + d[-4:]
    m = re.match(r"^(\(?0\d{2,3}\)?[- ]?)(\d+)$", value.replace("（", "(").replace("）", ")"))
    if m:
        return m.group(1) + "*" * (len(m.group(2)) - 4) + m.group(2)[-4:]
    return "*" * max(0, len(digits) - 4) + digits[-4:]


def mask_card(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return digits[:4] + "*" * max(0, len(digits) - 8) + digits[-4:]


def mask_plate(value: str) -> str:
    return value[:2] + "*" * max(0, len(value) - 3) + value[-1:]


_MASKERS = {
    "person": mask_name,
    "official": lambda s: re.sub(r"[\u4e00-\u9fa5]{2,3}$", lambda m: mask_name(m.group()), s) if len(s) > 3 else mask_name(s),
    "phone": mask_phone,
    "id_number": mask_id_number,
    "bank_card": mask_card,
    "plate": mask_plate,
}


def mask_entity_text(entity_type: str, text: str) -> str:
    masker = _MASKERS.get(entity_type)
    return masker(text) if masker else text


def mask_entities(entities: Entities, role: Role) -> Entities:
    """Entities as the role may see them (identifiers masked unless the role needs them)."""
    visible = UNMASKED.get(role, frozenset())
    items = [
        e if e.type not in IDENTIFIER_TYPES or e.type in visible
        else e.model_copy(update={"text": mask_entity_text(e.type, e.text), "value": None})
        for e in entities.items
    ]
    return entities.model_copy(update={"items": items})


def mask_text(text: str, entities: Iterable[Entity], role: Role) -> str:
    """The petition text with identifier spans the role may not see replaced by their masked form."""
    visible = UNMASKED.get(role, frozenset())
    out, pos = [], 0
    for e in sorted((e for e in entities if e.type in IDENTIFIER_TYPES and e.type not in visible), key=lambda e: e.start):
        if e.start < pos:
            continue
        out.append(text[pos:e.start])
        out.append(mask_entity_text(e.type, text[e.start:e.end]))
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


_PLACEHOLDER = {"person": "[姓名]", "official": "[公职人员]", "phone": "[电话]", "id_number": "[身份证号]",
                "bank_card": "[银行卡号]", "plate": "[车牌]"}
_HOUSE_NUMBER = re.compile(r"\d+(?:栋|幢|号楼)\d*(?:单元)?\d*(?:楼|层)?\d*(?:号|室)?|\d+单元\d+(?:号|室)?|\d{3,4}室")


def deidentify(text: str, entities: Iterable[Entity]) -> str:
    """Text for anything that leaves the trusted store: identifiers and house numbers replaced.

    Places down to 街道/乡镇/村 are kept (属地 routing needs them); building/unit/room numbers go.
    """
    out, pos = [], 0
    for e in sorted((e for e in entities if e.type in _PLACEHOLDER), key=lambda e: e.start):
        if e.start < pos:
            continue
        out.append(text[pos:e.start])
        out.append(_PLACEHOLDER[e.type])
        pos = e.end
    out.append(text[pos:])
    result = "".join(out)
    # Identifier-shaped digit runs the extractor missed still go.
    result = re.sub(r"(?<!\d)\d{17}[\dXx](?!\d)", "[身份证号]", result)
    result = re.sub(r"(?<!\d)1[3-9]\d{9}(?!\d)", "[电话]", result)
    result = re.sub(r"(?<!\d)\d{15,19}(?!\d)", "[号码]", result)
    return _HOUSE_NUMBER.sub("[门牌]", result)


def normalize_identifier(kind: Literal["id_number", "phone"], value: str) -> str:
    if kind == "id_number":
        return re.sub(r"\s", "", value).upper()
    digits = re.sub(r"\D", "", value)
    return digits[-11:] if len(digits) >= 11 and digits[-11] == "1" else digits


def petitioner_key(kind: Literal["id_number", "phone"], value: str, secret: bytes) -> str:
    """Keyed HMAC-SHA256 of a normalised identifier (repeat detection without storing it)."""
    if not secret:
        raise ValueError("a non-empty secret is required for petitioner keys")
    msg = f"{kind}:{normalize_identifier(kind, value)}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


_HEALTH = re.compile(r"病|住院|手术|癌|瘫痪|残疾|伤残|骨折|抑郁|精神|诊断|化疗|透析|艾滋|HIV|怀孕|流产|药")
_MINOR = re.compile(r"(?:孩子|小孩|儿子|女儿|孙子|孙女|学生|娃儿?)[^，。]{0,6}(?:[1-9]|1[0-3]|[一二三四五六七八九十]|十[一二三])岁|未成年|幼儿园|小学生|婴儿|新生儿")
_BANK = re.compile(r"银行卡|卡号|银行账[户号]|账号")


def is_pii_sensitive(text: str, entities: Entities | None = None) -> bool:
    """Health, minors or bank accounts in the text (an ID number or phone alone is not)."""
    if entities is not None and entities.of_type("bank_card"):
        return True
    return bool(_HEALTH.search(text) or _MINOR.search(text) or _BANK.search(text))
