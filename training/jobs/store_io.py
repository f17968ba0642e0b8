"""Case-store side of a re-classification job: read cases, checkpoint in job_runs, apply results.

Reading: cases in id order by keyset pagination (resumable from the last staged id), each with
its current decision as the "old" labels, its stored entities and extractor version, and whether
its latest decision came from an officer (`decisions.source == "human"`).

Applying (--apply), per case, in one transaction per chunk of cases:

- suggestions of this model version are added (one row per field; existing rows are kept);
- newly extracted entities replace the stored ones (with the extractor version);
- latest decision from the system (or none): a different new decision becomes the current one
  (a `decisions` row with source "system", the case's fields, audit action "reclassify"); a
  needs_review result without an open task opens one (reason needs_review);
- latest decision confirmed by an officer: never overwritten. When the new track or department
  differs from the officer's, the case goes to the review queue with reason "model_changed"
  (模型变更; audit action "open_review", the proposal in `after`) unless such a task is already open.

Everything is keyed so that re-running the same job (same model, rules and cases) changes
nothing; a job killed between applying and checkpointing redoes its shard without duplicates.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from training.jobs.sources import RawRecord
from triage.schemas import Decision, Entities
from triage.store import CaseStore, load_pii_secret
from triage.store.engine import safe_url
from triage.store.models import Case, DecisionRow, Petitioner, ReviewTask, SuggestionRow
from triage.store.repository import _decision_summary, _review_due

logger = logging.getLogger(__name__)

PAGE = 500
APPLY_CHUNK = 500
JOB_KIND = "reclassify"
MODEL_CHANGED = "model_changed"  # review reason 模型变更
ROLE = "admin"


def open_store(url: str) -> CaseStore:
    """The case store at `url`, with the service's petitioner-key secret (TRIAGE_PII_KEY / var/pii.key)."""
    from serving.settings import ServiceSettings

    settings = ServiceSettings()
    secret = load_pii_secret(settings.pii_key.get_secret_value() if settings.pii_key else None, settings.pii_key_file)
    store = CaseStore.from_url(url, pii_secret=secret)
    store.ensure_ready()
    return store


class StoreCheckpoint:
    """The job state in the job_runs table (one row per job id)."""

    def __init__(self, store: CaseStore, job_id: str, params: dict[str, Any]) -> None:
        self.store, self.job_id, self.params = store, job_id, params

    def load(self) -> Any:
        from training.jobs.reclassify import JobState

        rec = self.store.get_job(self.job_id)
        if rec is None or not rec.checkpoint:
            return None
        return JobState.from_json(dict(rec.checkpoint))

    def save(self, state: Any) -> None:
        from dataclasses import asdict

        rec = self.store.get_job(self.job_id)
        if rec is None or rec.state != "running" and not state.done:
            self.store.start_job(self.job_id, JOB_KIND, self.params)  # creates it, or reopens a failed run
        self.store.save_checkpoint(self.job_id, asdict(state), counts=dict(state.applied))

    def discard(self) -> None:
        if self.store.get_job(self.job_id) is not None:
            self.store.finish_job(self.job_id, state="cancelled")
            self.store.start_job(self.job_id, JOB_KIND, self.params)  # reopens it as running
            self.store.save_checkpoint(self.job_id, {}, counts={})

    def fail(self) -> None:
        if self.store.get_job(self.job_id) is not None:
            self.store.finish_job(self.job_id, state="failed")


class StoreJobIO:
    def __init__(self, url: str, *, actor: str) -> None:
        self.url = url
        self.actor = actor
        self.store = open_store(url)

    def identity(self) -> str:
        return safe_url(self.url)

    def checkpoint(self, job_id: str, params: dict[str, Any]) -> StoreCheckpoint:
        return StoreCheckpoint(self.store, job_id, params)

    def count(self) -> int:
        return self.store.count_cases()

    def finish(self, job_id: str, counts: dict[str, Any]) -> None:
        self.store.finish_job(job_id, state="done", counts=counts)

    # -- read ---------------------------------------------------------------------------------------

    def iter_records(self, after_id: str | None) -> Iterator[tuple[str, RawRecord]]:
        """(case id, record) for every case after `after_id`, in id order."""
        position = 0
        while True:
            with self.store.read() as s:
                q = select(Case).order_by(Case.id).limit(PAGE)
                if after_id is not None:
                    q = q.where(Case.id > after_id)
                cases = s.scalars(q).all()
                if not cases:
                    return
                ids = [c.id for c in cases]
                latest = select(func.max(DecisionRow.id)).where(DecisionRow.case_id.in_(ids)).group_by(DecisionRow.case_id)
                human = {cid for cid, src in s.execute(select(DecisionRow.case_id, DecisionRow.source)
                                                        .where(DecisionRow.id.in_(latest))) if src == "human"}
                pids = {c.petitioner_id for c in cases if c.petitioner_id is not None}
                people = {p.id: p for p in s.scalars(select(Petitioner).where(Petitioner.id.in_(pids)))} if pids else {}
                batch = [(c.id, _record(c, people.get(c.petitioner_id), c.id in human)) for c in cases]
            for case_id, data in batch:
                position += 1
                yield case_id, RawRecord(position, data, human_confirmed=bool(data.pop("_human")))
            after_id = batch[-1][0]

    # -- apply --------------------------------------------------------------------------------------

    def apply(self, table: pa.Table) -> dict[str, int]:
        """Write one processed shard's results; returns counts by outcome."""
        ok = table.filter(pc.is_null(table.column("error")))
        rows = ok.to_pylist()
        counts: Counter[str] = Counter()
        for i in range(0, len(rows), APPLY_CHUNK):
            chunk = rows[i:i + APPLY_CHUNK]
            for attempt in range(2):
                try:
                    counts.update(self._apply_chunk(chunk))
                    break
                except StaleDataError:
                    # An officer changed one of these cases meanwhile: redo the chunk against the new state.
                    if attempt:
                        raise
                    logger.info("apply: concurrent update in a chunk of %d cases, retrying", len(chunk))
        return dict(counts)

    def _apply_chunk(self, rows: list[dict[str, Any]]) -> Counter[str]:
        counts: Counter[str] = Counter()
        ids = [r["case_id"] for r in rows]
        with self.store.write() as s:
            cases = {c.id: c for c in s.scalars(select(Case).where(Case.id.in_(ids)))}
            have = {tuple(r) for r in s.execute(select(SuggestionRow.case_id, SuggestionRow.model_version, SuggestionRow.field)
                                                .where(SuggestionRow.case_id.in_(ids)))}
            latest_ids = select(func.max(DecisionRow.id)).where(DecisionRow.case_id.in_(ids)).group_by(DecisionRow.case_id)
            latest = {d.case_id: d for d in s.scalars(select(DecisionRow).where(DecisionRow.id.in_(latest_ids)))}
            open_tasks = {tuple(r) for r in s.execute(select(ReviewTask.case_id, ReviewTask.reason)
                                                      .where(ReviewTask.case_id.in_(ids), ReviewTask.state != "done"))}
            events: list[dict[str, Any]] = []
            for row in rows:
                case = cases.get(row["case_id"])
                if case is None:
                    counts["missing"] += 1  # deleted since staging; reported in the counts
                    continue
                decision = Decision.model_validate_json(row["decision_json"])
                for fld, sug in json.loads(row["suggestions_json"]).items():
                    if (case.id, sug["model_version"], fld) not in have:
                        s.add(SuggestionRow(case_id=case.id, model_version=sug["model_version"], field=fld,
                                            labels=sug["labels"]))
                        counts["suggestions"] += 1
                if row["entities_json"] and case.extractor_version != row["extractor_version"]:
                    ents = Entities.model_validate_json(row["entities_json"])
                    case.entities = ents.model_dump(mode="json")
                    case.extractor_version = row["extractor_version"]
                    case.district, case.district_raw = ents.place.district, ents.place.district_raw
                    case.subdivision = ents.place.subdivision
                    counts["entities_updated"] += 1
                prev = latest.get(case.id)
                after = _decision_summary(decision)
                if prev is not None and prev.source == "human":
                    human = prev.decision
                    if (human.get("track"), human.get("department")) == (decision.track, decision.department):
                        counts["agrees_with_officer"] += 1
                    elif (case.id, MODEL_CHANGED) in open_tasks:
                        counts["review_already_open"] += 1
                    else:
                        task = ReviewTask(case_id=case.id, state="open", reason=MODEL_CHANGED, priority=decision.priority,
                                          due_date=_review_due(decision))
                        s.add(task)
                        s.flush()
                        open_tasks.add((case.id, MODEL_CHANGED))
                        events.append(dict(case_id=case.id, actor=self.actor, role=ROLE, action="open_review",
                                           before=_summary_of(human), after={"task_id": task.id, "reason": MODEL_CHANGED,
                                                                             "proposed": after},
                                           model_versions=dict(decision.model_versions),
                                           rules_version=decision.rules_version))
                        counts["review_model_changed"] += 1
                    continue
                if prev is not None and _summary_of(prev.decision) == after:
                    counts["unchanged"] += 1
                    continue
                before = _case_summary(case)
                CaseStore._apply_decision(case, decision)  # the store's own mapping onto the case row
                s.add(DecisionRow(case_id=case.id, decision=decision.model_dump(mode="json"),
                                  rules_version=decision.rules_version, model_versions=dict(decision.model_versions),
                                  source="system"))
                events.append(dict(case_id=case.id, actor=self.actor, role=ROLE, action="reclassify", before=before,
                                   after=after, model_versions=dict(decision.model_versions),
                                   rules_version=decision.rules_version))
                counts["decided"] += 1
                if decision.status == "needs_review" and (case.id, "needs_review") not in open_tasks:
                    s.add(ReviewTask(case_id=case.id, state="open", reason="needs_review", priority=decision.priority,
                                     due_date=_review_due(decision)))
                    open_tasks.add((case.id, "needs_review"))
                    counts["review_needs_review"] += 1
            s.flush()
            if events:
                self.store._append_events(s, events)  # same transaction: the audit chain and the change commit together
        return counts


def _summary_of(decision: dict[str, Any]) -> dict[str, Any] | None:
    """The audit summary of a stored decision, by the store's own function (None: not a valid Decision)."""
    try:
        return _decision_summary(Decision.model_validate(decision))
    except ValidationError:
        return None


def _case_summary(case: Case) -> dict[str, Any]:
    return {"track": case.track, "department": case.department, "request_type": case.request_type,
            "flags": list(case.flags or []), "status": case.status, "priority": case.priority,
            "merged_into": case.merged_into}


def _record(case: Case, person: Petitioner | None, human: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": case.id, "text": case.text, "title": case.title, "submitted_at": case.submitted_at,
        "channel": case.channel, "headcount": case.headcount, "entities": case.entities,
        "extractor_version": case.extractor_version, "track": case.track, "department": case.department,
        "status": case.status, "_human": human,
    }
    if person is not None:
        p = {k: getattr(person, k) for k in ("name", "id_number", "phone", "account") if getattr(person, k)}
        if p:
            data["petitioner"] = p
    return {k: v for k, v in data.items() if v is not None or k == "_human"}
