"""Builders for the rule tests: petitions with explicit model scores through the real extractor."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from triage.entities import EntityExtractor
from triage.pipeline import DecisionContext
from triage.rules import RuleDecider, load_decider
from triage.rules.engine import CHINA_TZ
from triage.schemas import DuplicateLink, LabelScore, Petition, Suggestion
from triage.taxonomy import Taxonomy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "fixtures" / "domain_examples.jsonl"
PETITIONER = {"name": "测试信访人", "phone": "13800001234"}
MODEL = "fixture-scores"


def load_examples() -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def suggestion(field: str, scores: Mapping[str, float] | str) -> Suggestion:
    """Ranked suggestion from {label: score} (or one label at 0.95)."""
    if isinstance(scores, str):
        scores = {scores: 0.95}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    return Suggestion(field=field, model_version=MODEL, labels=[LabelScore(label=k, score=v) for k, v in ranked])


def suggestions(track: Mapping[str, float] | str, department: Mapping[str, float] | str,
                request_type: Mapping[str, float] | str = "complaint") -> dict[str, Suggestion]:
    return {"track": suggestion("track", track), "department": suggestion("department", department),
            "request_type": suggestion("request_type", request_type)}


_EXTRACTORS: dict[int, EntityExtractor] = {}


def extractor(taxonomy: Taxonomy) -> EntityExtractor:
    """The real extractor (patterns + gazetteer, no LAC), built once per taxonomy."""
    if id(taxonomy) not in _EXTRACTORS:
        _EXTRACTORS[id(taxonomy)] = EntityExtractor(taxonomy.gazetteer)
    return _EXTRACTORS[id(taxonomy)]


def context(taxonomy: Taxonomy, text: str, *, track: Mapping[str, float] | str = "admin_duty",
            department: Mapping[str, float] | str = "hrss", request_type: Mapping[str, float] | str = "complaint",
            links: Iterable[DuplicateLink | Mapping[str, Any]] = (), submitted_at: str = "2026-03-10T09:30:00+08:00",
            **fields: Any) -> DecisionContext:
    """A DecisionContext: real entity extraction, explicit scores, given links."""
    record: dict[str, Any] = {"text": text, "submitted_at": submitted_at, "petitioner": PETITIONER, **fields}
    petition = Petition.model_validate(record)
    entities = extractor(taxonomy).extract(petition.text, petition)
    return DecisionContext(
        petition=petition, text=petition.text, entities=entities,
        suggestions=suggestions(track, department, request_type),
        links=[link if isinstance(link, DuplicateLink) else DuplicateLink.model_validate(link) for link in links],
        taxonomy=taxonomy, model_versions={"track": MODEL, "department": MODEL},
    )


def decider(taxonomy: Taxonomy, today: date | str = "2026-03-10", path: Path | None = None) -> RuleDecider:
    """A decider whose clock says `today` (Beijing time)."""
    day = date.fromisoformat(today) if isinstance(today, str) else today
    now = datetime(day.year, day.month, day.day, 12, 0, tzinfo=CHINA_TZ)
    return load_decider(taxonomy, path, clock=lambda: now)
