"""BatchTriager: one model session per worker, triaging staged rows a batch at a time.

The stages are those of `triage.pipeline.TriagePipeline` (normalize → extract → classify →
[link] → decide), batched: one classifier call per batch instead of one per petition. Entities
stored with a record are reused when their extractor version equals the current one (entity
extraction is the slow stage); `reextract` forces extraction. A record whose processing fails is
returned with an `error` (its id and position travel with it) and no labels; nothing is dropped.

The same class serves the in-process engine, each process of the multiprocessing pool (built once
by the pool initializer) and each Ray actor (`map_batches` with a callable class).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from triage.entities import EntityExtractor
from triage.errors import TriageError
from triage.pipeline import DecisionContext
from triage.schemas import Entities, LabelScore, Petition, Petitioner, Suggestion
from triage.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)

OUTPUT_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("case_id", pa.string(), nullable=False),
    pa.field("old_track", pa.string()),
    pa.field("new_track", pa.string()),
    pa.field("old_department", pa.string()),
    pa.field("new_department", pa.string()),
    pa.field("old_status", pa.string()),
    pa.field("new_status", pa.string()),
    pa.field("model_track", pa.string()),  # the classifier's top-1 (the decision may differ: rules)
    pa.field("track_score", pa.float64()),
    pa.field("model_department", pa.string()),
    pa.field("department_score", pa.float64()),
    pa.field("request_type", pa.string()),
    pa.field("priority", pa.string()),
    pa.field("rules_fired", pa.string()),  # rule ids joined with ";"
    pa.field("entities_reused", pa.bool_()),
    pa.field("changed", pa.bool_()),  # any of track/department/status differs from its old value
    pa.field("error", pa.string()),  # set for a record that could not be processed (then no labels)
    # Payload for --apply only (never in the report files: entities hold masked personal data).
    pa.field("human_confirmed", pa.bool_()),
    pa.field("suggestions_json", pa.string()),
    pa.field("decision_json", pa.string()),
    pa.field("entities_json", pa.string()),  # newly extracted entities, to store with the case
    pa.field("extractor_version", pa.string()),
])
PAYLOAD_COLUMNS = ("human_confirmed", "suggestions_json", "decision_json", "entities_json", "extractor_version")
REPORT_COLUMNS = tuple(n for n in OUTPUT_SCHEMA.names if n not in PAYLOAD_COLUMNS and n != "error")
SCORE_DIGITS = 4


@dataclass(frozen=True)
class TriagerConfig:
    """Everything a worker needs to build its own sessions (picklable: sent to pool workers and Ray actors)."""

    model_dir: str
    rules_path: str
    data_dir: str | None = None  # None: the repository's data/
    ner: bool = True  # LAC NER in entity extraction, as the service does by default
    reextract: bool = False  # extract entities even when stored ones have the current extractor version
    keep_payload: bool = False  # return suggestions/decision/entities JSON (apply mode)
    onnx_threads: int = 1
    as_of: str | None = None  # ISO datetime the rules take as "now" (deadlines): fixed per job for reproducible results
    extractor_version: str | None = None  # the current extractor's version (the driver builds one to know it)


def build_extractor(taxonomy: Any, ner: bool) -> EntityExtractor:
    """The entity extractor as the service builds it (serving/app.py): patterns + gazetteer (+ LAC NER)."""
    tagger = None
    if ner:
        from serving.ner import word_tagger

        tagger = word_tagger()  # TRIAGE_NER_ENGINE: lac (default) or fast, as the service
    return EntityExtractor(taxonomy.gazetteer, tagger)


def load_decider(taxonomy: Any, rules_path: Path, as_of: str | None) -> Any:
    """The rule engine for this rule file, its clock fixed at the job's `as_of` when given."""
    from triage.rules import load_decider as _load

    if as_of is None:
        return _load(taxonomy, rules_path)
    now = datetime.fromisoformat(as_of)
    return _load(taxonomy, rules_path, clock=lambda: now)


class BatchTriager:
    """Load taxonomy, classifier, decider (and the extractor when first needed) once; triage batches."""

    def __init__(self, config: TriagerConfig) -> None:
        from serving.sessions import OnnxClassifier  # the classify stage lives in serving/ (onnxruntime)

        self.config = config
        self.taxonomy = load_taxonomy(Path(config.data_dir)) if config.data_dir else load_taxonomy()
        self.classifier = OnnxClassifier(Path(config.model_dir), self.taxonomy, intra_op_threads=config.onnx_threads)
        self.decider = load_decider(self.taxonomy, Path(config.rules_path), config.as_of)
        self._extractor: EntityExtractor | None = None
        if config.extractor_version is None:
            self._extractor = build_extractor(self.taxonomy, config.ner)
        self.extractor_version = config.extractor_version or self.extractor.version
        self._names = {
            fld: {lab: (self.taxonomy.name_of(kind, lab) if (kind := self.taxonomy.field_kinds.get(fld)) else None)
                  for lab in head.labels}
            for fld, head in self.classifier.manifest.heads.items()
        }

    @property
    def extractor(self) -> EntityExtractor:
        # Built on first use: a worker whose records all carry current entities never loads the NER model.
        if self._extractor is None:
            self._extractor = build_extractor(self.taxonomy, self.config.ner)
            if self._extractor.version != self.extractor_version:
                raise TriageError(f"extractor version {self._extractor.version} != {self.extractor_version} of the job")
        return self._extractor

    # -- stages ------------------------------------------------------------------------------------

    def _suggestions(self, texts: list[str], titles: list[str | None] | None = None) -> list[dict[str, Suggestion]]:
        # OnnxClassifier.postprocess validates ~50 LabelScore models per petition; the values come
        # straight from the graph (probabilities in [0, 1]), so construct them without validation.
        probs = self.classifier.predict_proba(texts, titles)
        out: list[dict[str, Suggestion]] = [{} for _ in texts]
        version = self.classifier.version
        for fld, p in probs.items():
            labels = self.classifier.manifest.heads[fld].labels
            names = self._names[fld]
            order = (-p).argsort(axis=1, kind="stable")
            rows = p.tolist()
            for i, idx in enumerate(order.tolist()):
                row = rows[i]
                ranked = [LabelScore.model_construct(label=labels[j], name=names[labels[j]],
                                                     score=min(1.0, max(0.0, row[j]))) for j in idx]
                out[i][fld] = Suggestion.model_construct(field=fld, labels=ranked, model_version=version)
        return out

    def _entities(self, row: Mapping[str, Any], text: str, petition: Petition) -> tuple[Entities, bool]:
        if (not self.config.reextract and row.get("entities") and row.get("extractor_version") == self.extractor_version):
            return Entities.model_validate_json(row["entities"]), True
        return self.extractor.extract(text, petition), False

    def triage_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Triage staged rows (sources.STAGED_SCHEMA) into output rows (OUTPUT_SCHEMA), in order."""
        prepared: list[tuple[int, Petition, str, Entities, bool]] = []
        out: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            base = {"seq": row["seq"], "source": row["source"], "line": row["line"], "case_id": row["case_id"],
                    "old_track": row.get("old_track"), "old_department": row.get("old_department"),
                    "old_status": row.get("old_status"), "human_confirmed": bool(row.get("human_confirmed"))}
            out.append(base)
            try:
                petition = staged_petition(row["petition"])
                text = petition.text  # normalised by the Petition validator when the record was staged
                entities, reused = self._entities(row, text, petition)
            except Exception as exc:  # one bad record must not stop the job; reported with its id
                base["error"] = _describe(exc, "extract")
                logger.warning("case %s (%s:%s) skipped: %s", row["case_id"], row["source"], row["line"], base["error"])
                continue
            prepared.append((i, petition, text, entities, reused))
        if prepared:
            suggestions = self._suggestions([p[2] for p in prepared], [p[1].title for p in prepared])
            for (i, petition, text, entities, reused), sugg in zip(prepared, suggestions, strict=True):
                self._decide(out[i], petition, text, entities, reused, sugg)
        for row_out in out:
            for name in OUTPUT_SCHEMA.names:
                row_out.setdefault(name, None)
        return out

    def _decide(self, base: dict[str, Any], petition: Petition, text: str, entities: Entities, reused: bool,
                suggestions: dict[str, Suggestion]) -> None:
        versions = {name: s.model_version for name, s in suggestions.items()}
        versions["extractor"] = self.extractor_version
        try:
            decision = self.decider.decide(
                DecisionContext(petition, text, entities, suggestions, [], self.taxonomy, versions))
        except Exception as exc:  # reported with the case id, the job goes on
            base["error"] = _describe(exc, "decide")
            logger.warning("case %s (%s:%s) skipped: %s", base["case_id"], base["source"], base["line"], base["error"])
            return
        track, dept = suggestions.get("track"), suggestions.get("department")
        base.update(
            new_track=decision.track, new_department=decision.department, new_status=decision.status,
            model_track=track.top.label if track else None,
            track_score=round(track.top.score, SCORE_DIGITS) if track else None,
            model_department=dept.top.label if dept else None,
            department_score=round(dept.top.score, SCORE_DIGITS) if dept else None,
            request_type=decision.request_type, priority=decision.priority,
            rules_fired=";".join(decision.rules_fired), entities_reused=reused,
        )
        base["changed"] = any(base[f"old_{f}"] is not None and base[f"old_{f}"] != base[f"new_{f}"]
                              for f in ("track", "department", "status"))
        if self.config.keep_payload:
            base["suggestions_json"] = _json({k: v.model_dump(mode="json") for k, v in suggestions.items()})
            base["decision_json"] = decision.model_dump_json()
            if not reused:
                base["entities_json"] = entities.model_dump_json()
                base["extractor_version"] = self.extractor_version

    # -- engine adapters ---------------------------------------------------------------------------

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Ray Data `map_batches` entry (batch_format="pyarrow")."""
        return pa.Table.from_pylist(self.triage_rows(batch.to_pylist()), schema=OUTPUT_SCHEMA)


def staged_petition(data: str) -> Petition:
    """The Petition of a staged row without validating it again.

    Staged rows hold `Petition.model_dump_json()` of a petition validated (and normalised) while
    staging; validating again would run normalize() a second time for nothing (measured: the
    validators were ~10% of the triage time with stored entities).
    """
    fields = json.loads(data)
    if fields.get("submitted_at"):
        fields["submitted_at"] = datetime.fromisoformat(fields["submitted_at"])
    if isinstance(fields.get("petitioner"), dict):
        fields["petitioner"] = Petitioner.model_construct(**fields["petitioner"])
    return Petition.model_construct(**fields)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _describe(exc: BaseException, stage: str) -> str:
    # Exception messages of the domain core never contain petition text (errors.py); others are
    # reduced to their type, because a third-party message might quote its input.
    if isinstance(exc, TriageError):
        return f"{stage}: {exc.code} {exc}"
    return f"{stage}: {type(exc).__name__}"


# -- multiprocessing pool: one triager per worker process -----------------------------------------

_WORKER: BatchTriager | None = None


def init_worker(config: TriagerConfig) -> None:
    global _WORKER
    _WORKER = BatchTriager(config)


def triage_in_worker(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert _WORKER is not None, "init_worker was not called in this process"
    return _WORKER.triage_rows(rows)
