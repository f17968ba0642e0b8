"""Read models the store returns (plain pydantic; the API decides what each role may see)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["inserted", "unchanged", "triaged", "conflict"]


class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PetitionerRecord(_Record):
    """Masked fields are safe for every role; raw ones must be masked by the API per role."""

    id: int
    name_masked: str | None = None
    id_number_masked: str | None = None
    phone_masked: str | None = None
    name: str | None = None
    id_number: str | None = None
    phone: str | None = None
    account: str | None = None


class SuggestionRecord(_Record):
    field: str
    model_version: str
    labels: list[dict[str, Any]]
    created_at: datetime


class DecisionRecord(_Record):
    id: int
    decision: dict[str, Any]
    rules_version: str | None
    model_versions: dict[str, str] | None
    source: str
    confirmed_by: str | None
    created_at: datetime


class LinkRecord(_Record):
    linked_case_id: str
    probability: float
    reasons: list[str]
    same_petitioner: bool
    linker_version: str


class ReviewTaskRecord(_Record):
    id: int
    case_id: str
    state: str
    reason: str
    priority: str
    due_date: date | None
    claimed_by: str | None
    claimed_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    version: int


class CaseRecord(_Record):
    """A case with its current decision fields (no history)."""

    id: str
    title: str | None
    text: str
    submitted_at: datetime | None
    channel: str | None
    headcount: int | None
    district: str | None
    district_raw: str | None
    subdivision: str | None
    entities: dict[str, Any] | None
    extractor_version: str | None
    track: str | None
    department: str | None
    request_type: str | None
    flags: list[str] | None
    status: str | None
    priority: str | None
    confidential: bool
    merged_into: str | None
    source: str
    created_at: datetime
    updated_at: datetime
    version: int
    petitioner: PetitionerRecord | None = None


class CaseDetail(CaseRecord):
    """A case with its history: suggestions, decisions (oldest first), links and review tasks."""

    suggestions: list[SuggestionRecord] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    links: list[LinkRecord] = Field(default_factory=list)
    review_tasks: list[ReviewTaskRecord] = Field(default_factory=list)


class CasePage(BaseModel):
    data: list[CaseRecord]
    count: int  # total matching, for pagination


class CaseFilter(BaseModel):
    """Search filters (all optional, combined with AND)."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = None
    track: str | None = None
    department: str | None = None
    district: str | None = None
    priority: str | None = None
    submitted_from: datetime | None = None  # inclusive
    submitted_to: datetime | None = None  # exclusive
    text_contains: str | None = None
    include_confidential: bool = False  # 检举控告 cases: only for the supervisor role


class SaveOutcome(BaseModel):
    case_id: str
    outcome: Outcome
    review_task_id: int | None = None
    audit_seq: int | None = None


class AuditEventRecord(_Record):
    seq: int
    case_id: str | None
    actor: str
    role: str
    action: str
    at: datetime
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason_code: str | None = None
    comment: str | None = None
    model_versions: dict[str, str] | None = None
    rules_version: str | None = None
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str | None = None  # hash_mismatch | prev_hash_mismatch | seq_gap


class ApiKeyRecord(_Record):
    id: int
    name: str
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


class IdempotencyRecord(_Record):
    api_key_id: int
    key: str
    request_hash: str
    status_code: int
    response: Any
    created_at: datetime


class JobRecord(_Record):
    id: str
    kind: str
    params: dict[str, Any] | None
    state: str
    checkpoint: dict[str, Any] | None
    counts: dict[str, Any] | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ModelVersionRecord(_Record):
    id: int
    kind: str
    name: str
    path: str
    sha256: str
    manifest: dict[str, Any] | None
    active: bool
    activated_at: datetime | None
    activated_by: str | None
    created_at: datetime
