"""TriagePipeline: one petition through normalize → extract → classify → link → decide.

Each stage sits behind a narrow Protocol so the components of later issues plug in without the
pipeline knowing how they work. A stage that is not available makes `triage()` raise
StageNotReadyError: the service answers 503 with a clear code instead of inventing output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from triage.errors import StageNotReadyError
from triage.schemas import Decision, DuplicateLink, Entities, Petition, Suggestion, TriageResult
from triage.taxonomy import Taxonomy
from triage.text import normalize

logger = logging.getLogger(__name__)

STAGES = ("normalize", "extract", "classify", "link", "decide")


@runtime_checkable
class Extractor(Protocol):
    version: str

    def extract(self, text: str, petition: Petition) -> Entities: ...


@runtime_checkable
class Classifier(Protocol):
    version: str
    fields: tuple[str, ...]

    def predict(self, texts: list[str], titles: list[str | None] | None = None) -> list[dict[str, Suggestion]]: ...


@runtime_checkable
class Linker(Protocol):
    version: str

    def link(self, petition: Petition, text: str, entities: Entities) -> list[DuplicateLink]: ...


@dataclass(frozen=True)
class DecisionContext:
    """Everything the rule engine may look at; nothing else reaches a decision."""

    petition: Petition
    text: str
    entities: Entities
    suggestions: Mapping[str, Suggestion]
    links: list[DuplicateLink]
    taxonomy: Taxonomy
    model_versions: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Decider(Protocol):
    version: str

    def decide(self, ctx: DecisionContext) -> Decision: ...


class TriagePipeline:
    """Run the stages in order for each petition; the only orchestration in the domain core."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        *,
        extractor: Extractor | None = None,
        classifier: Classifier | None = None,
        linker: Linker | None = None,
        decider: Decider | None = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.extractor = extractor
        self.classifier = classifier
        self.linker = linker
        self.decider = decider

    def readiness(self) -> dict[str, str | None]:
        """Stage → loaded component version, or None when the stage is not available."""
        return {
            "normalize": "builtin",
            "extract": getattr(self.extractor, "version", None),
            "classify": getattr(self.classifier, "version", None),
            "link": getattr(self.linker, "version", None),
            "decide": getattr(self.decider, "version", None),
        }

    @property
    def ready(self) -> bool:
        return all(v is not None for v in self.readiness().values())

    def _require(self) -> tuple[Extractor, Classifier, Linker, Decider]:
        missing = [s for s, v in self.readiness().items() if v is None]
        if missing:
            raise StageNotReadyError(
                missing[0],
                "未加载的处理环节: " + ", ".join(missing)
                + "。请先训练并配置模型（TRIAGE_MODEL_DIR），或等待该环节上线。",
            )
        assert self.extractor and self.classifier and self.linker and self.decider
        return self.extractor, self.classifier, self.linker, self.decider

    def triage(self, petition: Petition) -> TriageResult:
        """Triage one validated petition.

        Raises:
            StageNotReadyError: a stage is not available.
        """
        return self.triage_with_features(petition)[0]

    def triage_with_features(self, petition: Petition) -> tuple[TriageResult, Any]:
        """`triage()`, plus the link features the linker computed for the text (None when the linker does
        not expose them): the store saves them with the case, so the text is not featurised twice.

        Raises:
            StageNotReadyError: a stage is not available.
        """
        extractor, classifier, linker, decider = self._require()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        text = normalize(petition.text)
        timings["normalize"] = (time.perf_counter() - t0) * 1000
        t = time.perf_counter()
        entities = extractor.extract(text, petition)
        timings["extract"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        suggestions = classifier.predict([text], [petition.title])[0]
        timings["classify"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        link_with_features = getattr(linker, "link_with_features", None)
        if link_with_features is not None:
            links, link_features = link_with_features(petition, text, entities)
        else:
            links, link_features = linker.link(petition, text, entities), None
        timings["link"] = (time.perf_counter() - t) * 1000
        versions = {name: s.model_version for name, s in suggestions.items()}
        versions["extractor"] = extractor.version
        versions["linker"] = linker.version
        t = time.perf_counter()
        decision = decider.decide(
            DecisionContext(petition, text, entities, suggestions, links, self.taxonomy, versions)
        )
        timings["decide"] = (time.perf_counter() - t) * 1000
        logger.info(
            "triaged id=%s chars=%d status=%s rules=%s ms=%.1f",
            petition.id, len(text), decision.status, ",".join(decision.rules_fired),
            (time.perf_counter() - t0) * 1000,
        )
        return TriageResult(
            petition_id=petition.id,
            normalized_text=text,
            entities=entities,
            suggestions=dict(suggestions),
            links=links,
            decision=decision,
            stages_ms=timings,
        ), link_features
