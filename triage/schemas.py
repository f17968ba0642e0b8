"""Domain schemas: the petition record of DESIGN.md and what the pipeline produces.

Validation is strict and the messages are precise (they name the field and the rule that failed)
but never echo the value of a personal-data field.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.identity import is_valid_id_number, is_valid_phone
from triage.text import MAX_TEXT_CHARS, normalize

Channel = Literal["online", "letter", "visit", "phone"]
Status = Literal["auto", "needs_review", "not_accepted", "merged"]
Priority = Literal["P0", "P1", "P2"]

_PETITION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class Petitioner(BaseModel):
    """Who wrote the petition. Every field is optional; formats are checked when present."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    id_number: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    phone: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    account: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("id_number")
    @classmethod
    def _check_id_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        if not is_valid_id_number(value):
            # The value itself is personal data: never echo it.
            raise ValueError("身份证号格式或校验位不正确（应为18位，最后一位为校验码）")
        return value

    @field_validator("phone")
    @classmethod
    def _check_phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = re.sub(r"[\s-]", "", value)
        if not is_valid_phone(compact):
            raise ValueError("电话号码格式不正确（手机11位，座机如023-12345678）")
        return compact


class Petition(BaseModel):
    """One petition record (DESIGN.md "Petition record"). Only `text` is required.

    Unknown fields are ignored here (files may carry gold labels and extra columns); the HTTP
    request model forbids them.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    id: str | None = None
    title: Annotated[str, Field(max_length=200)] | None = None
    text: str
    submitted_at: datetime | None = None
    channel: Channel | None = None
    petitioner: Petitioner | None = None
    headcount: Annotated[int, Field(ge=1, le=100_000)] | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not _PETITION_ID.match(value):
            raise ValueError("id 只能包含字母、数字和 . _ : -，长度1–64")
        return value

    @field_validator("title")
    @classmethod
    def _normalize_title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = normalize(value)
        return value or None

    @field_validator("text")
    @classmethod
    def _normalize_text(cls, value: str) -> str:
        text = normalize(value)
        if not text:
            raise ValueError("text 为空：去除空白和控制字符后没有内容")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text 过长：规范化后 {len(text)} 字，上限 {MAX_TEXT_CHARS} 字")
        return text

    @field_validator("submitted_at")
    @classmethod
    def _require_timezone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("submitted_at 必须带时区，例如 2026-03-01T10:00:00+08:00")
        return value


EntityType = Literal[
    "person", "official", "org", "place", "phone", "id_number", "bank_card", "amount", "date",
    "case_number", "plate", "headcount",
]


class Entity(BaseModel):
    """One entity with character offsets into the normalised text (end exclusive)."""

    type: EntityType
    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    value: str | float | int | None = None  # normalised value: yuan, ISO date, district name …
    source: str | None = None  # which extractor found it (lac, pattern, gazetteer)
    valid: bool | None = None  # checksums for ID numbers and bank cards

    @model_validator(mode="after")
    def _check_span(self) -> Entity:
        if self.end <= self.start:
            raise ValueError("entity end must be greater than start")
        return self


class Place(BaseModel):
    """Where the matter happened (属地)."""

    district: str | None = None  # one of the 37 official names
    district_raw: str | None = None  # as written (渝北区, 开县)
    subdivision: str | None = None  # 街道/乡镇 when named
    basis: Literal["event", "respondent", "petitioner", "none"] = "none"


class Entities(BaseModel):
    items: list[Entity] = Field(default_factory=list)
    place: Place = Field(default_factory=Place)

    def of_type(self, entity_type: str) -> list[Entity]:
        return [e for e in self.items if e.type == entity_type]


class LabelScore(BaseModel):
    label: str
    name: str | None = None  # Chinese display name from the taxonomy
    score: float = Field(ge=0.0, le=1.0)


class Suggestion(BaseModel):
    """Ranked labels for one field with calibrated probabilities (highest first)."""

    field: str
    labels: list[LabelScore]
    model_version: str

    @property
    def top(self) -> LabelScore:
        return self.labels[0]


class DuplicateLink(BaseModel):
    case_id: str
    probability: float = Field(ge=0.0, le=1.0)
    reasons: list[str] = Field(default_factory=list)  # 同一信访人；同一小区；相似度0.91
    status: str | None = None  # the earlier case's status
    same_petitioner: bool = False
    # Lifecycle facts the decision rules (R05–R08) need when the store knows them.
    submitted_at: datetime | None = None  # when the earlier case was received
    answered_at: datetime | None = None  # when its written reply (答复/复查/复核意见) was served
    due: date | None = None  # its own handling deadline, when still open


class Reason(BaseModel):
    rule_id: str
    message: str  # short Chinese explanation shown to the officer


class Deadline(BaseModel):
    kind: str  # registration, acceptance_notice, objection, conclusion, review_request …
    due: date
    basis: str
    warning: bool = False  # channel windows are warnings, not our own deadlines
    estimated: bool = False  # a day counted lies in a year the holiday calendar does not cover


class Decision(BaseModel):
    """The rule engine's final decision, with the trace needed to audit it."""

    track: str
    department: str
    co_departments: list[str] = Field(default_factory=list)
    request_type: str | None = None
    flags: list[str] = Field(default_factory=list)
    status: Status
    # not_accepted / merged are only ever proposed: status stays needs_review until an officer confirms.
    proposed_status: Literal["not_accepted", "merged"] | None = None
    handling_unit: str | None = None  # 属地 unit the matter goes to (沙坪坝区人力资源和社会保障局)
    priority: Priority = "P2"
    procedure: Literal["normal", "simple"] = "normal"
    merged_into: str | None = None
    deadlines: list[Deadline] = Field(default_factory=list)
    reasons: list[Reason] = Field(default_factory=list)
    rules_fired: list[str] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)
    model_versions: dict[str, str] = Field(default_factory=dict)
    rules_version: str | None = None


class TriageResult(BaseModel):
    """Everything the pipeline produced for one petition."""

    petition_id: str | None
    normalized_text: str
    entities: Entities
    suggestions: dict[str, Suggestion]
    links: list[DuplicateLink]
    decision: Decision
    stages_ms: dict[str, float] = Field(default_factory=dict)


class AuditEvent(BaseModel):
    """One append-only audit record. `hash` covers the event and `prev_hash` (tamper evidence)."""

    seq: int
    case_id: str | None
    actor: str  # user or service account id, never a personal name from a petition
    role: str
    action: str  # triage, claim, confirm, override, merge, split, activate_model …
    at: datetime
    before: dict[str, object] | None = None
    after: dict[str, object] | None = None
    reason_code: str | None = None
    comment: str | None = None
    model_versions: dict[str, str] = Field(default_factory=dict)
    rules_version: str | None = None
    prev_hash: str
    hash: str
