"""HTTP-only request and response shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from triage.schemas import Petition


class TriageRequest(Petition):
    """The petition record of DESIGN.md; unknown fields are rejected (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class Readiness(BaseModel):
    ready: bool
    stages: dict[str, str | None]
    taxonomy_version: str
    rules_version: str
    model_dir: str | None
