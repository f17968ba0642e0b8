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

from triage.schemas import Entities, Entity, TriageResult

Role = Literal["clerk", "reviewer", "supervisor", "admin", "auditor"]
ROLES: tuple[str, ...] = ("clerk", "reviewer", "supervisor", "admin", "auditor")

# Which personal types each role sees unmasked (DOMAIN.md §4: minimisation, masked display by default).
# "address" = house numbers (栋/单元/室) inside place and organisation (小区) entities and the text.
# clerk and reviewer need the petitioner's and the accused person's names to register and route a
# case; a supervisor handles contact and identity checks; admin (system) and auditor (audit trail) see
# no personal values. Unknown roles see nothing unmasked.
UNMASKED: dict[str, frozenset[str]] = {
    "clerk": frozenset({"person", "official"}),
    "reviewer": frozenset({"person", "official"}),
    "supervisor": frozenset({"person", "official", "phone", "id_number", "bank_card", "plate", "address"}),
    "admin": frozenset(),
    "auditor": frozenset(),
}
# 检举控告 (flag confidential, §30¶3): the petitioner's identity must not reach the accused unit, so
# only the supervisor keeps it; officials (the accused) stay visible to the roles that route the case.
CONFIDENTIAL_UNMASKED: dict[str, frozenset[str]] = {
    "clerk": frozenset({"official"}),
    "reviewer": frozenset({"official"}),
    "supervisor": UNMASKED["supervisor"],
    "admin": frozenset(),
    "auditor": frozenset(),
}
IDENTIFIER_TYPES = ("person", "official", "phone", "id_number", "bank_card", "plate")
PERSONAL_TYPES = (*IDENTIFIER_TYPES, "address")


def visible_types(role: str, confidential: bool = False) -> frozenset[str]:
    """Personal types the role may see unmasked."""
    table = CONFIDENTIAL_UNMASKED if confidential else UNMASKED
    return table.get(role, frozenset())


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


_N = r"[\d一二三四五六七八九十]+"
_HOUSE_NUMBER = re.compile(
    rf"{_N}(?:栋|幢|号楼)(?:{_N}单元)?(?:{_N}(?:楼|层))?(?:{_N}(?:号|室))?"  # 3栋2单元502室, 5号楼3层
    r"|\d+单元\d+(?:号|室)?|\d{3,4}室"  # 2单元502, 1203室
    r"|(?<=[路街巷道])\d+号(?:附\d+号)?(?:\d+-\d+)?"  # 中山一路12号附3号
)


def mask_address(text: str) -> str:
    """House numbers → *: 金港湾小区3栋2单元502室 → 金港湾小区*栋*单元***室 (小区/街道/村 stay)."""
    return _HOUSE_NUMBER.sub(lambda m: re.sub(r"[\d一二三四五六七八九十]", "*", m.group()), text)


def mask_entity_text(entity_type: str, text: str) -> str:
    if entity_type in ("place", "org"):
        return mask_address(text)
    masker = _MASKERS.get(entity_type)
    return masker(text) if masker else text


def _needs_mask(entity: Entity, visible: frozenset[str]) -> bool:
    if entity.type in IDENTIFIER_TYPES:
        return entity.type not in visible
    if entity.type in ("place", "org"):
        return "address" not in visible and _HOUSE_NUMBER.search(entity.text) is not None
    return False


def mask_entities(entities: Entities, role: Role | str, confidential: bool = False) -> Entities:
    """Entities as the role may see them: personal values masked unless the role needs them.

    Covers persons and officials (张**), ID numbers, phones, bank cards, plates and house numbers in
    places/organisations (addresses); a masked entity also loses its normalised `value`.
    """
    visible = visible_types(role, confidential)
    items = [
        e.model_copy(update={"text": mask_entity_text(e.type, e.text), "value": None}) if _needs_mask(e, visible) else e
        for e in entities.items
    ]
    return entities.model_copy(update={"items": items})


def mask_text(text: str, entities: Iterable[Entity], role: Role | str, confidential: bool = False) -> str:
    """The text with personal spans the role may not see replaced by their masked form.

    House numbers the extractor did not cover are masked too (when the role may not see addresses).
    """
    visible = visible_types(role, confidential)
    out, pos = [], 0
    for e in sorted((e for e in entities if _needs_mask(e, visible)), key=lambda e: e.start):
        if e.start < pos:
            continue
        out.append(text[pos:e.start])
        out.append(mask_entity_text(e.type, text[e.start:e.end]))
        pos = e.end
    out.append(text[pos:])
    result = "".join(out)
    return result if "address" in visible else mask_address(result)


def mask_result(result: TriageResult, role: Role | str, confidential: bool | None = None) -> TriageResult:
    """A TriageResult as the role may see it: entities and normalized_text masked.

    `confidential` defaults to the decision's flag (检举控告: the petitioner's identity is hidden
    from everyone but the supervisor).
    """
    conf = "confidential" in result.decision.flags if confidential is None else confidential
    return result.model_copy(update={
        "entities": mask_entities(result.entities, role, conf),
        "normalized_text": mask_text(result.normalized_text, result.entities.items, role, conf),
    })


_PLACEHOLDER = {"person": "[姓名]", "official": "[公职人员]", "phone": "[电话]", "id_number": "[身份证号]",
                "bank_card": "[银行卡号]", "plate": "[车牌]"}


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


# Sensitive personal information (PIPL 第二十八条) in free text: health, minors under 14, financial accounts.
_HEALTH = re.compile(
    r"病|住院|手术|癌|瘫痪|残疾|伤残|骨折|抑郁|精神|诊断|化疗|透析|艾滋|HIV|怀孕|流产|药|疫苗|癫痫|卧床|病历"
    r"|[受烧摔咬压砸撞刺割烫扭挫]伤|伤情|轻伤|重伤|淤青|缝了?针|鉴定为.{0,4}级"
)
_AGE_UNDER_14 = r"(?<![\d一二三四五六七八九十])(?:[1-9]|1[0-3]|[一二两三四五六七八九十]|十[一二三])(?:周)?岁(?:半)?"
_MINOR = re.compile(
    rf"(?:孩子|小孩|儿子|女儿|孙子|孙女|学生|娃娃?儿?|外孙女?|侄子|侄女|[^\s，。]{{1,3}}[（(])[^，。]{{0,6}}{_AGE_UNDER_14}"
    rf"|{_AGE_UNDER_14}的?(?:孩子|小孩|儿子|女儿|孙子|孙女|娃|学生|男孩|女孩)"
    r"|未成年|幼儿园|小学生|婴儿|新生儿|刚出生|出生证|[一二三四五六]年级|小学|初一|校园欺凌"
)
_BANK = re.compile(r"银行卡|卡号|银行账[户号]|账号|存折")

SENSITIVE_CATEGORIES = ("health", "minor", "financial")


def sensitive_categories(text: str, entities: Entities | None = None) -> list[str]:
    """Which kinds of sensitive personal information the petition contains: health, minor, financial.

    From the text and the extracted entities (a bank card number is financial). The decision's
    `pii_sensitive` flag is `bool(sensitive_categories(...))`; the categories say why (no values).
    """
    found = []
    if _HEALTH.search(text):
        found.append("health")
    if _MINOR.search(text):
        found.append("minor")
    if _BANK.search(text) or (entities is not None and entities.of_type("bank_card")):
        found.append("financial")
    return found


def is_pii_sensitive(text: str, entities: Entities | None = None) -> bool:
    """Health, minors or bank accounts in the text (an ID number or phone alone is not)."""
    return bool(sensitive_categories(text, entities))
