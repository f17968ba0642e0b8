"""HTTP-only request and response shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from triage.schemas import Decision, DuplicateLink, Entities, Petition, Suggestion


class TriageRequest(Petition):
    """The petition record of DESIGN.md; unknown fields are rejected (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class TriageResponse(BaseModel):
    id: str | None
    suggestions: dict[str, Suggestion]
    entities: Entities
    links: list[DuplicateLink]
    decision: Decision
    model_versions: dict[str, str]
    stages_ms: dict[str, float]


class Readiness(BaseModel):
    ready: bool
    stages: dict[str, str | None]
    taxonomy_version: str
    rules_version: str
    model_dir: str | None
