"""CaseStore: the case store's operations, one transaction each.

Writes run in a write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: read committed plus
advisory locks where order matters), so an operation either happens completely or not at all.
The audit trail is append-only and hash-chained; appends are serialised (PostgreSQL: a
transaction-level advisory lock; SQLite: the IMMEDIATE write lock) so the chain never forks.

Personal information: petitioner identifiers are matched by keyed HMAC (`triage.pii.petitioner_key`)
and kept raw only in the petitioner columns the API masks by role. Errors and log lines name
case ids and counts, never text, names or numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from triage.linking.index import LinkFeatures
from triage.pii import mask_id_number, mask_name, mask_phone, petitioner_key
from triage.schemas import Decision, Entities, Petition, TriageResult
from triage.schemas import Petitioner as PetitionerIn
from triage.store import audit as chain
from triage.store.engine import BEGIN_OPTION, is_postgres, make_engine
from triage.store.errors import CaseConflictError, CaseNotFoundError, ConflictError, StaleVersionError
from triage.store.migrate import ensure_schema
from triage.store.models import (
    ApiKey,
    AuditEventRow,
    Base,
    Case,
    CaseBand,
    CasePetitionerKey,
    CaseVector,
    DecisionRow,
    IdempotencyKey,
    JobRun,
    LinkRow,
    ModelVersion,
    Petitioner,
    ReviewTask,
    SuggestionRow,
    utcnow,
)
from triage.store.records import (
    ApiKeyRecord,
    AuditEventRecord,
    AuditVerification,
    CaseDetail,
    CaseFilter,
    CasePage,
    CaseRecord,
    DecisionRecord,
    IdempotencyRecord,
    JobRecord,
    LinkRecord,
    ModelVersionRecord,
    Outcome,
    PetitionerRecord,
    ReviewTaskRecord,
    SaveOutcome,
    SuggestionRecord,
)

logger = logging.getLogger(__name__)

# PostgreSQL advisory lock ids (arbitrary constants, unique to this application).
AUDIT_LOCK = 0x7472_6961_6765_0001  # "triage" + 1
VECTOR_LOCK = 0x7472_6961_6765_0002
API_KEY_PREFIX = "trk"
ROLES = ("clerk", "reviewer", "supervisor", "admin", "auditor")


_SUGGESTIONS, _DECISIONS, _LINKS, _REVIEW_TASKS = (Base.metadata.tables[m.__tablename__]
                                                   for m in (SuggestionRow, DecisionRow, LinkRow, ReviewTask))


def gen_case_id(now: datetime | None = None) -> str:
    """A new case id: date plus 12 random hex digits (CQ-20260301-1a2b3c4d5e6f)."""
    now = now or utcnow()
    return f"CQ-{now:%Y%m%d}-{secrets.token_hex(6)}"


def petitioner_keys(petitioner: PetitionerIn | None, secret: bytes) -> tuple[str, ...]:
    """Keyed hashes of the petitioner's ID number and phone (whichever are present)."""
    if petitioner is None:
        return ()
    keys = []
    if petitioner.id_number:
        keys.append(petitioner_key("id_number", petitioner.id_number, secret))
    if petitioner.phone:
        keys.append(petitioner_key("phone", petitioner.phone, secret))
    return tuple(keys)


def _decision_summary(decision: Decision) -> dict[str, Any]:
    """The decision fields an audit event records (codes only: no text, no personal data)."""
    return {
        "track": decision.track,
        "department": decision.department,
        "co_departments": list(decision.co_departments),
        "request_type": decision.request_type,
        "flags": sorted(decision.flags),
        "status": decision.status,
        "priority": decision.priority,
        "merged_into": decision.merged_into,
        "rules_fired": list(decision.rules_fired),
    }


def _is_confidential(decision: Decision) -> bool:
    # TAXONOMY §4: confidential = 检举人要求保密 or any discipline case (visible to the supervisor role only).
    return "confidential" in decision.flags or decision.track == "discipline"


def _review_due(decision: Decision) -> date | None:
    dues = [d.due for d in decision.deadlines if not d.warning]
    return min(dues) if dues else None


@dataclass(frozen=True)
class Registration:
    """One record to register as an existing case (history, ingest)."""

    petition: Petition  # must carry an id
    entities: Entities | None = None
    extractor_version: str | None = None
    features: LinkFeatures | None = None


class CaseStore:
    """Transactions over the case store. Thread-safe; share one per process.

    Args:
        engine: from `triage.store.make_engine`.
        pii_secret: secret for keyed petitioner hashes (`triage.store.keys.load_pii_secret`).
        auto_upgrade: upgrade the schema to head on first use; otherwise refuse a database
            that is behind with StageNotReadyError.
    """

    def __init__(self, engine: Engine, *, pii_secret: bytes, auto_upgrade: bool = False) -> None:
        if not pii_secret:
            raise ValueError("a non-empty pii_secret is required (see triage.store.keys.load_pii_secret)")
        self.engine = engine
        self.pii_secret = pii_secret
        self.auto_upgrade = auto_upgrade
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}), expire_on_commit=False)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._sqlite_writer = threading.RLock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def from_url(cls, url: str | None, *, pii_secret: bytes, auto_upgrade: bool = False) -> CaseStore:
        """Open the store at `url` (default sqlite:///var/triage.db)."""
        return cls(make_engine(url), pii_secret=pii_secret, auto_upgrade=auto_upgrade)

    # --- sessions -------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Check (and, when allowed, upgrade) the schema once per process."""
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                ensure_schema(self.engine, self.auto_upgrade)
                self._ready = True

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (one transaction, rolled back at the end)."""
        self.ensure_ready()
        with self._read_sessions() as s, s.begin():
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session for one write transaction: committed when the block ends, rolled back on error.

        SQLite has one writer at a time: the threads of this process queue on a lock before BEGIN IMMEDIATE
        (woken as soon as the writer commits) rather than all polling in SQLite's busy handler (sleeps growing
        to 100 ms). Other processes still queue on the busy timeout. Its effect on the tail at 8–32 concurrent
        requests is not settled by measurement yet (the tail is dominated by stalls of other causes)."""
        self.ensure_ready()
        with self._sqlite_writer or nullcontext(), self._write_sessions() as s, s.begin():
            yield s

    @property
    def _pg(self) -> bool:
        return is_postgres(self.engine)

    def content_hash(self, petition: Petition) -> str:
        """Keyed hash of a record's content (everything but its id): equal content ⇔ equal hash."""
        body = json.dumps(petition.model_dump(mode="json", exclude={"id"}), sort_keys=True, ensure_ascii=False)
        return hmac.new(self.pii_secret, b"content:" + body.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- cases: write ---------------------------------------------------------------------

    def save_triage(
        self,
        petition: Petition,
        result: TriageResult,
        *,
        actor: str,
        role: str,
        features: LinkFeatures | None = None,
        linker_version: str | None = None,
    ) -> SaveOutcome:
        """Store one triaged petition: case, suggestions, decision, links, review task, audit event.

        Idempotent by case id: the same id with the same content changes nothing (outcome
        "unchanged"); a case registered earlier without a decision (ingest) gets this triage
        attached ("triaged"); a new id is inserted ("inserted").

        Raises:
            CaseConflictError: the id exists with different content.
        """
        case_id = petition.id or result.petition_id or gen_case_id()
        if petition.id is None:
            petition = petition.model_copy(update={"id": case_id})
        digest = self.content_hash(petition)
        for attempt in range(2):
            try:
                with self.write() as s:
                    return self._save_triage(s, petition, digest, result, actor, role, features, linker_version)
            except IntegrityError:
                # A concurrent writer inserted the same case (or petitioner) first: retry once, which
                # resolves to unchanged / conflict / triaged against what it stored.
                if attempt:
                    raise
                logger.info("save_triage retry after concurrent insert case=%s", case_id)
        raise AssertionError("unreachable")

    def _save_triage(
        self, s: Session, petition: Petition, digest: str, result: TriageResult, actor: str, role: str,
        features: LinkFeatures | None, linker_version: str | None,
    ) -> SaveOutcome:
        assert petition.id is not None
        case = s.get(Case, petition.id)
        outcome: Outcome = "inserted"
        if case is not None:
            if case.content_hash != digest:
                raise CaseConflictError(f"案件 {petition.id} 已以不同内容登记（同一编号只能对应同一内容）")
            if case.status is not None:
                return SaveOutcome(case_id=case.id, outcome="unchanged")
            outcome = "triaged"
        else:
            case = self._new_case(s, petition, digest, result.entities, result.decision.model_versions.get("extractor"),
                                  source="api")
        d = result.decision
        self._apply_decision(case, d)
        s.flush()
        if outcome == "inserted":
            self._write_link_data(s, [(case.id, petitioner_keys(petition.petitioner, self.pii_secret), features)],
                                  replace=False)
        # Suggestions, decision, links and review task as Core inserts on the tables (executemany where several
        # rows): the ORM's unit of work (bulk or per object) cost more CPU than the statements themselves.
        if result.suggestions:
            s.execute(insert(_SUGGESTIONS), [
                dict(case_id=case.id, model_version=sug.model_version, field=field,
                     labels=[ls.model_dump(mode="json") for ls in sug.labels])
                for field, sug in result.suggestions.items()])
        s.execute(insert(_DECISIONS), dict(case_id=case.id, decision=d.model_dump(mode="json"), rules_version=d.rules_version,
                                           model_versions=dict(d.model_versions), source="system"))
        lv = linker_version or d.model_versions.get("linker") or "unknown"
        links: dict[str, dict[str, Any]] = {}
        for link in result.links:
            if link.case_id not in links and link.case_id != case.id:
                links[link.case_id] = dict(case_id=case.id, linked_case_id=link.case_id, probability=link.probability,
                                           reasons=list(link.reasons), same_petitioner=link.same_petitioner, linker_version=lv)
        if links:
            s.execute(insert(_LINKS), list(links.values()))
        task_id: int | None = None
        if d.status == "needs_review":  # version 1: what the ORM's version counter starts a new task at
            res = s.execute(insert(_REVIEW_TASKS), dict(case_id=case.id, state="open", reason="needs_review",
                                                        priority=d.priority, due_date=_review_due(d), version=1))
            task_id = int(res.inserted_primary_key[0])
        [event] = self._append_events(s, [dict(
            case_id=case.id, actor=actor, role=role, action="triage", before=None, after=_decision_summary(d),
            model_versions=dict(d.model_versions), rules_version=d.rules_version,
        )])
        return SaveOutcome(case_id=case.id, outcome=outcome, review_task_id=task_id, audit_seq=event.seq)

    def register_case(self, petition: Petition, *, entities: Entities | None = None, extractor_version: str | None = None,
                      features: LinkFeatures | None = None, actor: str = "ingest", role: str = "admin") -> Outcome:
        """Register one existing case (history, ingest) without a decision.

        Returns:
            "inserted" or "unchanged" (same id, same content).

        Raises:
            CaseConflictError: the id exists with different content.
        """
        [outcome] = self.register_many([Registration(petition, entities, extractor_version, features)], actor=actor, role=role)
        if outcome == "conflict":
            raise CaseConflictError(f"案件 {petition.id} 已以不同内容登记（同一编号只能对应同一内容）")
        return outcome

    def register_many(self, items: Sequence[Registration], *, actor: str = "ingest", role: str = "admin") -> list[Outcome]:
        """Register a batch of existing cases in ONE transaction; per item inserted/unchanged/conflict.

        A conflict (same id, different content) does not abort the batch: that item is left as
        stored and reported. Each inserted case gets a "register" audit event.
        """
        for item in items:
            if not item.petition.id:
                raise ValueError("register_many needs petitions with an id")
        for attempt in range(2):
            try:
                with self.write() as s:
                    return self._register_many(s, items, actor, role)
            except IntegrityError:
                if attempt:
                    raise
                logger.info("register_many retry after concurrent insert (%d items)", len(items))
        raise AssertionError("unreachable")

    def _register_many(self, s: Session, items: Sequence[Registration], actor: str, role: str) -> list[Outcome]:
        ids = [i.petition.id for i in items]
        existing = {c.id: c.content_hash for c in s.execute(select(Case.id, Case.content_hash).where(Case.id.in_(ids)))}
        outcomes: list[Outcome] = []
        events: list[dict[str, Any]] = []
        batch_hash: dict[str, str] = {}
        link_data: list[tuple[str, tuple[str, ...], LinkFeatures | None]] = []
        for item in items:
            p = item.petition
            assert p.id is not None
            digest = self.content_hash(p)
            known = existing.get(p.id) or batch_hash.get(p.id)
            if known is not None:
                outcomes.append("unchanged" if known == digest else "conflict")
                continue
            self._new_case(s, p, digest, item.entities, item.extractor_version, source="ingest")
            link_data.append((p.id, petitioner_keys(p.petitioner, self.pii_secret), item.features))
            batch_hash[p.id] = digest
            outcomes.append("inserted")
            events.append(dict(case_id=p.id, actor=actor, role=role, action="register", before=None,
                               after={"source": "ingest", "extractor_version": item.extractor_version}))
        s.flush()
        self._write_link_data(s, link_data, replace=False)
        if events:
            self._append_events(s, events)
        return outcomes

    def _new_case(self, s: Session, p: Petition, digest: str, entities: Entities | None, extractor_version: str | None,
                  *, source: str) -> Case:
        """A new Case row (added, not flushed); its link data is written by `_write_link_data`."""
        assert p.id is not None
        petitioner = self._resolve_petitioner(s, p.petitioner)
        place = entities.place if entities else None
        case = Case(
            id=p.id, title=p.title, text=p.text, content_hash=digest, submitted_at=p.submitted_at, channel=p.channel,
            headcount=p.headcount, district=place.district if place else None,
            district_raw=place.district_raw if place else None, subdivision=place.subdivision if place else None,
            entities=entities.model_dump(mode="json") if entities else None, extractor_version=extractor_version,
            petitioner_id=petitioner.id if petitioner else None, confidential=False, source=source,
        )
        s.add(case)
        return case

    def _resolve_petitioner(self, s: Session, p: PetitionerIn | None) -> Petitioner | None:
        """Find the petitioner by keyed ID-number hash, else by phone hash, else create one."""
        if p is None or not any((p.name, p.id_number, p.phone, p.account)):
            return None
        id_key = petitioner_key("id_number", p.id_number, self.pii_secret) if p.id_number else None
        phone_key = petitioner_key("phone", p.phone, self.pii_secret) if p.phone else None
        row: Petitioner | None = None
        if id_key:
            row = s.scalars(select(Petitioner).where(Petitioner.id_key == id_key)).first()
        if row is None and phone_key:
            q = select(Petitioner).where(Petitioner.phone_key == phone_key).order_by(Petitioner.id.desc())
            if id_key:  # only adopt a phone-only record: another ID number is another person
                q = q.where(Petitioner.id_key.is_(None))
            row = s.scalars(q).first()
        if row is None:
            row = Petitioner()
            s.add(row)
        # Keep the latest identifiers given (a petitioner may add an ID number or a new phone).
        if id_key and row.id_key is None:
            row.id_key, row.id_number, row.id_number_masked = id_key, p.id_number, mask_id_number(p.id_number or "")
        if phone_key:
            row.phone_key, row.phone, row.phone_masked = phone_key, p.phone, mask_phone(p.phone or "")
        if p.name:
            row.name, row.name_masked = p.name, mask_name(p.name)
        if p.account:
            row.account = p.account
        s.flush()
        return row

    def _write_link_data(self, s: Session, entries: Sequence[tuple[str, Sequence[str], LinkFeatures | None]],
                         *, replace: bool) -> None:
        """Petitioner keys, band hashes and vectors of flushed cases (replacing earlier ones when asked)."""
        if not entries:
            return
        ids = [e[0] for e in entries]
        key_rows = [{"case_id": cid, "key": k} for cid, keys, _ in entries for k in dict.fromkeys(keys)]
        band_rows = [{"case_id": cid, "band": b} for cid, _, f in entries if f is not None
                     for b in dict.fromkeys(int(x) for x in f.bands)]
        vec_rows = []
        for cid, _, f in entries:
            if f is not None and f.vector is not None:
                vec = np.ascontiguousarray(f.vector, dtype=np.float32).reshape(-1)
                vec_rows.append({"case_id": cid, "dim": int(vec.shape[0]), "vector": vec.tobytes()})
        if replace:
            s.execute(delete(CasePetitionerKey).where(CasePetitionerKey.case_id.in_(ids)))
            with_features = [cid for cid, _, f in entries if f is not None]
            if with_features:
                s.execute(delete(CaseBand).where(CaseBand.case_id.in_(with_features)))
        if key_rows:
            s.execute(insert(CasePetitionerKey), key_rows)
        if band_rows:
            s.execute(insert(CaseBand), band_rows)
        if vec_rows:
            self._lock_vectors(s)
            if replace:
                s.execute(delete(CaseVector).where(CaseVector.case_id.in_([r["case_id"] for r in vec_rows])))
            s.execute(insert(CaseVector), vec_rows)

    def _lock_vectors(self, s: Session) -> None:
        # Vector seqs must become visible in seq order, or a reader that refreshed past a higher seq
        # would never see a lower one committed later. The lock makes commit order = seq order.
        if self._pg and not s.info.get("vector_lock"):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": VECTOR_LOCK})
            s.info["vector_lock"] = True

    @staticmethod
    def _apply_decision(case: Case, d: Decision) -> None:
        case.track, case.department, case.request_type = d.track, d.department, d.request_type
        case.flags = sorted(d.flags)
        case.status, case.priority, case.merged_into = d.status, d.priority, d.merged_into
        case.confidential = _is_confidential(d)

    def record_decision(
        self, case_id: str, decision: Decision, *, actor: str, role: str, source: str = "human",
        expected_version: int | None = None, action: str | None = None, reason_code: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Make `decision` the case's current one (a human confirmation or override), with its audit event.

        Args:
            expected_version: the case version the caller read; a different stored version raises.
            action: audit action (default: "confirm" when nothing changes, else "override").

        Returns:
            The case's new version.

        Raises:
            CaseNotFoundError, StaleVersionError.
        """
        try:
            with self.write() as s:
                case = s.get(Case, case_id)
                if case is None:
                    raise CaseNotFoundError(f"案件 {case_id} 不存在")
                if expected_version is not None and case.version != expected_version:
                    raise StaleVersionError(f"案件 {case_id} 已更新到版本 {case.version}（请求基于版本 {expected_version}）")
                before = self._case_summary(case)
                self._apply_decision(case, decision)
                after = _decision_summary(decision)
                s.add(DecisionRow(case_id=case_id, decision=decision.model_dump(mode="json"),
                                  rules_version=decision.rules_version, model_versions=dict(decision.model_versions),
                                  source=source, confirmed_by=actor if source == "human" else None))
                s.flush()
                changed = {k: v for k, v in after.items() if k != "rules_fired" and before.get(k) != v}
                self._append_events(s, [dict(
                    case_id=case_id, actor=actor, role=role, action=action or ("override" if changed else "confirm"),
                    before=before, after=after, reason_code=reason_code, comment=comment,
                    model_versions=dict(decision.model_versions), rules_version=decision.rules_version,
                )])
                return case.version
        except StaleDataError as exc:
            raise StaleVersionError(f"案件 {case_id} 已被并发修改，请刷新后重试") from exc

    @staticmethod
    def _case_summary(case: Case) -> dict[str, Any]:
        return {"track": case.track, "department": case.department, "request_type": case.request_type,
                "flags": list(case.flags or []), "status": case.status, "priority": case.priority,
                "merged_into": case.merged_into}

    # --- cases: read ----------------------------------------------------------------------

    def get_case(self, case_id: str, *, detail: bool = True) -> CaseDetail | None:
        """The case with its petitioner (raw and masked fields) and, with `detail`, its history."""
        with self.read() as s:
            case = s.get(Case, case_id)
            if case is None:
                return None
            rec = CaseDetail.model_validate(self._case_record(s, case))
            if detail:
                rec.suggestions = [SuggestionRecord.model_validate(r) for r in s.scalars(
                    select(SuggestionRow).where(SuggestionRow.case_id == case_id).order_by(SuggestionRow.id))]
                rec.decisions = [DecisionRecord.model_validate(r) for r in s.scalars(
                    select(DecisionRow).where(DecisionRow.case_id == case_id).order_by(DecisionRow.id))]
                rec.links = [LinkRecord.model_validate(r) for r in s.scalars(
                    select(LinkRow).where(LinkRow.case_id == case_id).order_by(LinkRow.probability.desc()))]
                rec.review_tasks = [ReviewTaskRecord.model_validate(r) for r in s.scalars(
                    select(ReviewTask).where(ReviewTask.case_id == case_id).order_by(ReviewTask.id))]
            return rec

    @staticmethod
    def _case_record(s: Session, case: Case) -> dict[str, Any]:
        data = {c.key: getattr(case, c.key) for c in Case.__table__.columns}
        data["petitioner"] = None
        if case.petitioner_id is not None:
            p = s.get(Petitioner, case.petitioner_id)
            data["petitioner"] = PetitionerRecord.model_validate(p) if p else None
        return data

    def search(self, filters: CaseFilter | None = None, *, page: int = 1, page_size: int = 20) -> CasePage:
        """Cases matching the filters, newest submitted first, one page of them plus the total count."""
        f = filters or CaseFilter()
        if page < 1 or not 1 <= page_size <= 500:
            raise ValueError("page ≥ 1 and 1 ≤ page_size ≤ 500")
        conds = []
        for col, value in ((Case.status, f.status), (Case.track, f.track), (Case.department, f.department),
                           (Case.district, f.district), (Case.priority, f.priority)):
            if value is not None:
                conds.append(col == value)
        if f.submitted_from is not None:
            conds.append(Case.submitted_at >= f.submitted_from)
        if f.submitted_to is not None:
            conds.append(Case.submitted_at < f.submitted_to)
        if f.text_contains:
            conds.append(Case.text.contains(f.text_contains, autoescape=True))
        if not f.include_confidential:
            conds.append(Case.confidential.is_(False))
        with self.read() as s:
            total = s.scalar(select(func.count()).select_from(Case).where(*conds)) or 0
            rows = s.scalars(
                select(Case).where(*conds)
                .order_by(Case.submitted_at.desc().nulls_last(), Case.id)
                .offset((page - 1) * page_size).limit(page_size)
            ).all()
            return CasePage(data=[CaseRecord.model_validate(self._case_record(s, c)) for c in rows], count=total)

    def count_cases(self) -> int:
        """Number of stored cases."""
        with self.read() as s:
            return s.scalar(select(func.count()).select_from(Case)) or 0

    # --- review tasks ---------------------------------------------------------------------

    def open_review_task(self, case_id: str, *, reason: str, priority: str = "P2", due_date: date | None = None,
                         actor: str = "system", role: str = "admin") -> int:
        """Open a review task for a case (e.g. reason "model_changed" from a batch job); returns its id."""
        with self.write() as s:
            if s.get(Case, case_id) is None:
                raise CaseNotFoundError(f"案件 {case_id} 不存在")
            task = ReviewTask(case_id=case_id, state="open", reason=reason, priority=priority, due_date=due_date)
            s.add(task)
            s.flush()
            self._append_events(s, [dict(case_id=case_id, actor=actor, role=role, action="open_review",
                                         after={"task_id": task.id, "reason": reason, "priority": priority})])
            return task.id

    def claim_review_task(self, task_id: int, *, actor: str, role: str) -> ReviewTaskRecord:
        """Claim an open task for `actor` (atomically: a task is claimed by one reviewer only).

        Raises:
            CaseNotFoundError: no such task. ConflictError: the task is not open.
        """
        now = utcnow()
        with self.write() as s:
            res = s.execute(update(ReviewTask).where(ReviewTask.id == task_id, ReviewTask.state == "open")
                            .values(state="claimed", claimed_by=actor, claimed_at=now, version=ReviewTask.version + 1))
            task = s.get(ReviewTask, task_id, populate_existing=True)
            if task is None:
                raise CaseNotFoundError(f"审核任务 {task_id} 不存在")
            if res.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has rowcount
                raise ConflictError(f"审核任务 {task_id} 当前状态为 {task.state}，不能领取")
            self._append_events(s, [dict(case_id=task.case_id, actor=actor, role=role, action="claim",
                                         before={"state": "open"}, after={"state": "claimed", "task_id": task_id})])
            return ReviewTaskRecord.model_validate(task)

    def resolve_review_task(self, task_id: int, *, actor: str, role: str) -> ReviewTaskRecord:
        """Mark a claimed (or open) task done. Raises ConflictError when it is already done."""
        with self.write() as s:
            task = s.get(ReviewTask, task_id)
            if task is None:
                raise CaseNotFoundError(f"审核任务 {task_id} 不存在")
            if task.state == "done":
                raise ConflictError(f"审核任务 {task_id} 已完成")
            before = task.state
            task.state, task.resolved_at = "done", utcnow()
            s.flush()
            self._append_events(s, [dict(case_id=task.case_id, actor=actor, role=role, action="resolve_review",
                                         before={"state": before}, after={"state": "done", "task_id": task_id})])
            return ReviewTaskRecord.model_validate(task)

    def list_review_tasks(self, *, state: str = "open", limit: int = 50) -> list[ReviewTaskRecord]:
        """Tasks in a state, most urgent first (priority, due date, age)."""
        with self.read() as s:
            rows = s.scalars(select(ReviewTask).where(ReviewTask.state == state)
                             .order_by(ReviewTask.priority, ReviewTask.due_date.asc().nulls_last(), ReviewTask.id)
                             .limit(limit))
            return [ReviewTaskRecord.model_validate(r) for r in rows]

    # --- audit ----------------------------------------------------------------------------

    def append_audit(
        self, *, actor: str, role: str, action: str, case_id: str | None = None,
        before: dict[str, Any] | None = None, after: dict[str, Any] | None = None, reason_code: str | None = None,
        comment: str | None = None, model_versions: dict[str, str] | None = None, rules_version: str | None = None,
    ) -> AuditEventRecord:
        """Append one event to the hash-chained audit trail (in its own transaction)."""
        with self.write() as s:
            [row] = self._append_events(s, [dict(
                case_id=case_id, actor=actor, role=role, action=action, before=before, after=after,
                reason_code=reason_code, comment=comment, model_versions=model_versions, rules_version=rules_version,
            )])
            return AuditEventRecord.model_validate(row)

    def _append_events(self, s: Session, events: list[dict[str, Any]]) -> list[AuditEventRow]:
        """Append events inside the caller's transaction, serialised against every other appender."""
        if self._pg:
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
        head = s.execute(select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)).first()
        seq, prev = (int(head.seq), str(head.hash)) if head else (0, chain.GENESIS_HASH)
        rows = []
        for ev in events:
            seq += 1
            fields: dict[str, Any] = {
                "seq": seq, "case_id": ev.get("case_id"), "actor": ev["actor"], "role": ev["role"], "action": ev["action"],
                "at": utcnow(), "before": chain.json_roundtrip(ev.get("before")), "after": chain.json_roundtrip(ev.get("after")),
                "reason_code": ev.get("reason_code"), "comment": ev.get("comment"),
                "model_versions": chain.json_roundtrip(ev.get("model_versions") or {}), "rules_version": ev.get("rules_version"),
                "prev_hash": prev,
            }
            fields["hash"] = chain.event_hash(fields)
            prev = fields["hash"]
            row = AuditEventRow(**fields)
            s.add(row)
            rows.append(row)
        s.flush()
        return rows

    def audit_events(self, *, case_id: str | None = None, after_seq: int = 0, limit: int = 100) -> list[AuditEventRecord]:
        """Audit events in chain order (optionally of one case), starting after `after_seq`."""
        with self.read() as s:
            q = select(AuditEventRow).where(AuditEventRow.seq > after_seq)
            if case_id is not None:
                q = q.where(AuditEventRow.case_id == case_id)
            return [AuditEventRecord.model_validate(r) for r in s.scalars(q.order_by(AuditEventRow.seq).limit(limit))]

    def verify_audit(self, *, chunk: int = 5000) -> AuditVerification:
        """Recompute the hash chain; report the first event whose seq, prev_hash or hash is wrong."""
        expected_seq, prev, checked = 1, chain.GENESIS_HASH, 0
        last = 0
        while True:
            with self.read() as s:
                rows = s.scalars(select(AuditEventRow).where(AuditEventRow.seq > last)
                                 .order_by(AuditEventRow.seq).limit(chunk)).all()
            if not rows:
                return AuditVerification(ok=True, checked=checked)
            for r in rows:
                if r.seq != expected_seq:
                    return AuditVerification(ok=False, checked=checked, first_broken_seq=expected_seq, problem="seq_gap")
                if r.prev_hash != prev:
                    return AuditVerification(ok=False, checked=checked, first_broken_seq=r.seq, problem="prev_hash_mismatch")
                fields = {k: getattr(r, k) for k in chain.HASHED_FIELDS}
                if chain.event_hash(fields) != r.hash:
                    return AuditVerification(ok=False, checked=checked, first_broken_seq=r.seq, problem="hash_mismatch")
                prev, expected_seq, checked, last = r.hash, r.seq + 1, checked + 1, r.seq

    # --- API keys -------------------------------------------------------------------------

    def create_api_key(self, name: str, role: str, *, actor: str = "admin") -> tuple[ApiKeyRecord, str]:
        """Create a key; returns its record and the plaintext (shown once; only its sha256 is stored)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        prefix = secrets.token_hex(4)
        plaintext = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        with self.write() as s:
            row = ApiKey(name=name, prefix=prefix, key_hash=hashlib.sha256(plaintext.encode()).hexdigest(), role=role)
            s.add(row)
            s.flush()
            self._append_events(s, [dict(actor=actor, role="admin", action="create_api_key",
                                         after={"api_key_id": row.id, "name": name, "prefix": prefix, "role": role})])
            return ApiKeyRecord.model_validate(row), plaintext

    def verify_api_key(self, plaintext: str) -> ApiKeyRecord | None:
        """The key's record when `plaintext` is a valid, unrevoked key; else None."""
        parts = plaintext.split("_", 2)
        if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
            return None
        with self.read() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, hashlib.sha256(plaintext.encode()).hexdigest()):
            return None
        return ApiKeyRecord.model_validate(row)

    def revoke_api_key(self, key_id: int, *, actor: str = "admin") -> bool:
        """Revoke a key; False when it does not exist or was already revoked."""
        with self.write() as s:
            row = s.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utcnow()
            s.flush()
            self._append_events(s, [dict(actor=actor, role="admin", action="revoke_api_key",
                                         after={"api_key_id": key_id, "prefix": row.prefix})])
            return True

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """All keys (revoked ones too), oldest first; never the hashes."""
        with self.read() as s:
            return [ApiKeyRecord.model_validate(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    # --- idempotency keys -----------------------------------------------------------------

    def get_idempotency(self, api_key_id: int, key: str) -> IdempotencyRecord | None:
        """The stored response for (api key, Idempotency-Key), if any."""
        with self.read() as s:
            row = s.scalars(select(IdempotencyKey).where(IdempotencyKey.api_key_id == api_key_id,
                                                         IdempotencyKey.key == key)).first()
            return IdempotencyRecord.model_validate(row) if row else None

    def put_idempotency(self, api_key_id: int, key: str, *, request_hash: str, status_code: int,
                        response: Any) -> IdempotencyRecord:
        """Store a response; when one is already stored for this key, return that one unchanged
        (the caller compares `request_hash` to tell a replay from a key reused for another request)."""
        try:
            with self.write() as s:
                row = IdempotencyKey(api_key_id=api_key_id, key=key, request_hash=request_hash, status_code=status_code,
                                     response=response)
                s.add(row)
                s.flush()
                return IdempotencyRecord.model_validate(row)
        except IntegrityError:
            existing = self.get_idempotency(api_key_id, key)
            if existing is None:
                raise
            return existing

    # --- batch jobs -----------------------------------------------------------------------

    def start_job(self, job_id: str, kind: str, params: dict[str, Any] | None = None) -> JobRecord:
        """Create a job run, or return the stored one to resume it (same id and kind).

        Raises:
            ConflictError: the id belongs to a job of another kind.
        """
        try:
            with self.write() as s:
                row = s.get(JobRun, job_id)
                if row is not None:
                    if row.kind != kind:
                        raise ConflictError(f"作业 {job_id} 已存在且类型为 {row.kind}")
                    if row.state in ("failed", "cancelled"):
                        row.state, row.finished_at = "running", None
                    return JobRecord.model_validate(row)
                row = JobRun(id=job_id, kind=kind, params=params, state="running", checkpoint=None, counts={})
                s.add(row)
                s.flush()
                return JobRecord.model_validate(row)
        except IntegrityError:
            return self.start_job(job_id, kind, params)

    def get_job(self, job_id: str) -> JobRecord | None:
        """The job run, or None."""
        with self.read() as s:
            row = s.get(JobRun, job_id)
            return JobRecord.model_validate(row) if row else None

    def save_checkpoint(self, job_id: str, checkpoint: dict[str, Any], counts: dict[str, Any] | None = None) -> None:
        """Record how far a job got (commit this together with nothing else: it is the resume point)."""
        with self.write() as s:
            row = s.get(JobRun, job_id)
            if row is None:
                raise CaseNotFoundError(f"作业 {job_id} 不存在")
            row.checkpoint = checkpoint
            if counts is not None:
                row.counts = counts

    def finish_job(self, job_id: str, *, state: str = "done", counts: dict[str, Any] | None = None) -> None:
        """Mark a job done / failed / cancelled."""
        if state not in ("done", "failed", "cancelled"):
            raise ValueError("state must be done, failed or cancelled")
        with self.write() as s:
            row = s.get(JobRun, job_id)
            if row is None:
                raise CaseNotFoundError(f"作业 {job_id} 不存在")
            row.state, row.finished_at = state, utcnow()
            if counts is not None:
                row.counts = counts

    # --- model versions -------------------------------------------------------------------

    def register_model_version(self, name: str, path: str, sha256: str, manifest: dict[str, Any] | None = None,
                               *, kind: str = "classifier") -> ModelVersionRecord:
        """Register a model artifact (idempotent by name; the same name with another sha256 is a conflict)."""
        try:
            with self.write() as s:
                row = s.scalars(select(ModelVersion).where(ModelVersion.name == name)).first()
                if row is not None:
                    if row.sha256 != sha256:
                        raise ConflictError(f"模型版本 {name} 已登记且文件摘要不同")
                    return ModelVersionRecord.model_validate(row)
                row = ModelVersion(kind=kind, name=name, path=path, sha256=sha256, manifest=manifest, active=False)
                s.add(row)
                s.flush()
                return ModelVersionRecord.model_validate(row)
        except IntegrityError:
            return self.register_model_version(name, path, sha256, manifest, kind=kind)

    def activate_model_version(self, name: str, *, actor: str, role: str = "admin") -> ModelVersionRecord:
        """Make `name` the active model of its kind (the previous one is deactivated), audited."""
        with self.write() as s:
            row = s.scalars(select(ModelVersion).where(ModelVersion.name == name)).first()
            if row is None:
                raise CaseNotFoundError(f"模型版本 {name} 未登记")
            previous = s.scalars(select(ModelVersion).where(ModelVersion.kind == row.kind, ModelVersion.active.is_(True))).all()
            for p in previous:
                p.active = False
            s.flush()
            row.active, row.activated_at, row.activated_by = True, utcnow(), actor
            s.flush()
            self._append_events(s, [dict(actor=actor, role=role, action="activate_model",
                                         before={"active": [p.name for p in previous]}, after={"active": name},
                                         model_versions={row.kind: name})])
            return ModelVersionRecord.model_validate(row)

    def active_model_version(self, kind: str = "classifier") -> ModelVersionRecord | None:
        """The active model of a kind, or None."""
        with self.read() as s:
            row = s.scalars(select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.active.is_(True))).first()
            return ModelVersionRecord.model_validate(row) if row else None


def utc(dt: datetime) -> datetime:
    """Attach UTC to a naive datetime (tests and scripts)."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def open_store(url: str | None, *, db_auto_upgrade: str = "sqlite", pii_key: str | None = None,
               pii_key_file: str | None = None) -> CaseStore:
    """A CaseStore from the service settings (database_url, db_auto_upgrade, pii_key, pii_key_file).

    Args:
        db_auto_upgrade: "sqlite" (upgrade the embedded default on first use), "always" or "never".
    """
    from pathlib import Path

    from triage.store.keys import load_pii_secret
    from triage.store.migrate import auto_upgrade_allowed

    engine = make_engine(url)
    secret = load_pii_secret(pii_key, Path(pii_key_file) if pii_key_file else Path("var") / "pii.key")
    return CaseStore(engine, pii_secret=secret, auto_upgrade=auto_upgrade_allowed(engine, db_auto_upgrade))
