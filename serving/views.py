"""What each role sees of a case: HTTP response shapes with personal data masked by role.

Masking follows `triage.pii.UNMASKED` (DOMAIN.md §4 (b)): entity spans in the text and the
petitioner's identifiers are replaced by their masked forms (张**, 500***********1234,
138****5678) unless the role needs the raw value. A second pass masks identifier-shaped digit
runs the extractor did not tag, so an untagged ID number or mobile number never leaves raw.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from triage.pii import UNMASKED, mask_entities, mask_id_number, mask_phone, mask_text
from triage.schemas import Decision, DuplicateLink, Entities, Suggestion
from triage.store.records import ReviewTaskRecord

_ID_RUN = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_MOBILE_RUN = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_CARD_RUN = re.compile(r"(?<!\d)\d{15,19}(?!\d)")


def visible_types(role: str) -> frozenset[str]:
    return UNMASKED.get(role, frozenset())


def mask_digit_runs(text: str, role: str) -> str:
    """Mask ID-, mobile- and card-shaped digit runs the role may not see (the extractor may miss some)."""
    visible = visible_types(role)
    if "id_number" not in visible:
        text = _ID_RUN.sub(lambda m: mask_id_number(m.group()), text)
    if "bank_card" not in visible:
        text = _CARD_RUN.sub(lambda m: m.group()[:4] + "*" * (len(m.group()) - 8) + m.group()[-4:], text)
    if "phone" not in visible:
        text = _MOBILE_RUN.sub(lambda m: mask_phone(m.group()), text)
    return text


def masked_text(text: str, entities: Entities | None, role: str) -> str:
    out = mask_text(text, entities.items, role) if entities else text  # type: ignore[arg-type]
    return mask_digit_runs(out, role)


def masked_entities(entities: Entities, role: str) -> Entities:
    masked = mask_entities(entities, role)  # type: ignore[arg-type]
    items = [e.model_copy(update={"text": mask_digit_runs(e.text, role)}) for e in masked.items]
    return masked.model_copy(update={"items": items})


class PetitionerView(BaseModel):
    name: str | None = None
    id_number: str | None = None
    phone: str | None = None
    account: str | None = None


def petitioner_view(p: Any, role: str) -> PetitionerView | None:
    """Raw or masked petitioner fields by role (`p` is a store PetitionerRecord or a Petitioner)."""
    if p is None:
        return None
    visible = visible_types(role)

    def pick(raw: str | None, masked: str | None, kind: str, masker: Any) -> str | None:
        if raw is None:
            return masked
        return raw if kind in visible else (masked or masker(raw))

    from triage.pii import mask_name

    account = getattr(p, "account", None)
    return PetitionerView(
        name=pick(getattr(p, "name", None), getattr(p, "name_masked", None), "person", mask_name),
        id_number=pick(getattr(p, "id_number", None), getattr(p, "id_number_masked", None), "id_number", mask_id_number),
        phone=pick(getattr(p, "phone", None), getattr(p, "phone_masked", None), "phone", mask_phone),
        account=None if account is None else (account if "id_number" in visible else account[:2] + "***"),
    )


class TriageResponse(BaseModel):
    """Suggestions, entities (masked by role), links and the rule decision for one petition."""

    id: str | None
    persisted: bool = Field(description="false for ?dry_run=true: nothing was stored")
    outcome: str | None = Field(None, description="inserted | unchanged | triaged (persisted requests)")
    review_task_id: int | None = None
    suggestions: dict[str, Suggestion]
    entities: Entities
    links: list[DuplicateLink]
    decision: Decision
    model_versions: dict[str, str]
    stages_ms: dict[str, float]


class ReviewTaskView(ReviewTaskRecord):
    """A review task as the API shows it (no personal data in it: the store record's fields as they are)."""


class DecisionView(BaseModel):
    id: int
    decision: dict[str, Any]
    rules_version: str | None
    model_versions: dict[str, str] | None
    source: str
    confirmed_by: str | None
    created_at: datetime


class LinkView(BaseModel):
    linked_case_id: str
    probability: float
    reasons: list[str]
    same_petitioner: bool
    linker_version: str


class SuggestionView(BaseModel):
    field: str
    model_version: str
    labels: list[dict[str, Any]]
    created_at: datetime


class CaseView(BaseModel):
    id: str
    title: str | None
    text: str
    submitted_at: datetime | None
    channel: str | None
    headcount: int | None
    district: str | None
    district_raw: str | None
    subdivision: str | None
    track: str | None
    department: str | None
    request_type: str | None
    flags: list[str]
    status: str | None
    priority: str | None
    confidential: bool
    merged_into: str | None
    source: str
    created_at: datetime
    updated_at: datetime
    version: int
    petitioner: PetitionerView | None = None


class CaseDetailView(CaseView):
    entities: Entities | None = None
    suggestions: list[SuggestionView] = Field(default_factory=list)
    decisions: list[DecisionView] = Field(default_factory=list)
    links: list[LinkView] = Field(default_factory=list)
    review_tasks: list[ReviewTaskView] = Field(default_factory=list)


class CasePageView(BaseModel):
    data: list[CaseView]
    count: int
    page: int
    page_size: int


def case_view(rec: Any, role: str, *, detail: bool = False, hidden_ids: set[str] | None = None) -> CaseView:
    """A store CaseRecord/CaseDetail as `role` may see it; links to `hidden_ids` are dropped."""
    entities = Entities.model_validate(rec.entities) if rec.entities else None
    common: dict[str, Any] = {
        name: getattr(rec, name)
        for name in ("id", "submitted_at", "channel", "headcount", "district", "district_raw", "subdivision", "track",
                     "department", "request_type", "status", "priority", "confidential", "merged_into", "source",
                     "created_at", "updated_at", "version")
    }
    common["flags"] = list(rec.flags or [])
    common["title"] = mask_digit_runs(rec.title, role) if rec.title else rec.title
    common["text"] = masked_text(rec.text, entities, role)
    common["petitioner"] = petitioner_view(rec.petitioner, role)
    if not detail:
        return CaseView(**common)
    hidden = hidden_ids or set()
    return CaseDetailView(
        **common,
        entities=masked_entities(entities, role) if entities else None,
        suggestions=[SuggestionView.model_validate(s.model_dump()) for s in rec.suggestions],
        decisions=[DecisionView.model_validate(d.model_dump()) for d in rec.decisions],
        links=[LinkView.model_validate(lk.model_dump()) for lk in rec.links if lk.linked_case_id not in hidden],
        review_tasks=[ReviewTaskView.model_validate(t, from_attributes=True) for t in rec.review_tasks],
    )
