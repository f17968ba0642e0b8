"""Builders for store tests (synthetic petitions only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.factories import FAKE_ID, FAKE_PHONE
from triage.linking.index import LinkFeatures
from triage.schemas import Deadline, Decision, Entities, LabelScore, Petition, Place, Suggestion, TriageResult

SECRET = b"store-test-secret"


def petition(case_id: str | None = "CQ-T-1", text: str = "小区路灯坏了三个月没人修", **overrides: Any) -> Petition:
    record: dict[str, Any] = {"id": case_id, "text": text, "submitted_at": "2026-03-01T10:00:00+08:00", "channel": "online",
                              "petitioner": {"name": "王小明", "id_number": FAKE_ID, "phone": FAKE_PHONE}}
    record.update(overrides)
    return Petition.model_validate(record)


def decision(status: str = "needs_review", **overrides: Any) -> Decision:
    data: dict[str, Any] = {
        "track": "admin_duty", "department": "urban", "request_type": "complaint", "flags": [], "status": status,
        "priority": "P1", "rules_version": "rules-1", "model_versions": {"track": "m-1", "linker": "lk-1"},
        "rules_fired": ["R10_x"], "deadlines": [Deadline(kind="registration", due="2026-03-04", basis="§21")],
    }
    data.update(overrides)
    return Decision.model_validate(data)


def result(p: Petition, d: Decision | None = None, links: list[dict[str, Any]] | None = None) -> TriageResult:
    return TriageResult(
        petition_id=p.id, normalized_text=p.text,
        entities=Entities(place=Place(district="沙坪坝区", district_raw="沙坪坝区", subdivision="小龙坎街道", basis="event")),
        suggestions={"track": Suggestion(field="track", labels=[LabelScore(label="admin_duty", score=0.8),
                                                                LabelScore(label="petition", score=0.2)], model_version="m-1")},
        links=links or [], decision=d or decision(),
    )


def features(seed: int, dim: int = 16, bands: tuple[int, ...] | None = None) -> LinkFeatures:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=dim).astype(np.float32)
    v /= np.linalg.norm(v)
    return LinkFeatures(bands=bands if bands is not None else tuple(int(x) for x in rng.integers(-2**62, 2**62, size=8)),
                        vector=v)
