"""Typed SQLAlchemy 2 models of the case store (one module: the schema reads top to bottom).

Personal information: petitioner identifiers are matched through keyed HMAC hashes
(`triage.pii.petitioner_key`); the raw identifiers sit only in `Petitioner.name/id_number/phone/
account`, columns the API hides by role (masked display copies sit beside them). Nothing raw
goes into an index, a log line or an error message.

Timestamps are stored in UTC and always come back timezone-aware (SQLite has no time zones).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC; naive values are refused (they are a bug)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column: attach a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Petitioner(Base):
    """A person or organisation who petitions; identity through keyed hashes only."""

    __tablename__ = "petitioners"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id_key: Mapped[str | None] = mapped_column(String(64), unique=True)  # HMAC of the normalised ID number
    phone_key: Mapped[str | None] = mapped_column(String(64), index=True)  # HMAC of the normalised phone
    # Masked display copies (张**, 500***********1234, 138****5678): safe for any role.
    name_masked: Mapped[str | None] = mapped_column(String(64))
    id_number_masked: Mapped[str | None] = mapped_column(String(32))
    phone_masked: Mapped[str | None] = mapped_column(String(32))
    # Raw identifiers: only the API's role masking decides who sees them.
    name: Mapped[str | None] = mapped_column(String(64))
    id_number: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32))
    account: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Case(Base):
    """One petition as registered, with its current (latest) decision fields denormalised."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_status_priority", "status", "priority"),
        Index("ix_cases_submitted_at", "submitted_at"),
        Index("ix_cases_department", "department"),
        Index("ix_cases_district", "district"),
        Index("ix_cases_track", "track"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)  # normalised (triage.text.normalize)
    content_hash: Mapped[str] = mapped_column(String(64))  # keyed hash of the input record (idempotency)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    channel: Mapped[str | None] = mapped_column(String(16))
    headcount: Mapped[int | None] = mapped_column(Integer)
    district: Mapped[str | None] = mapped_column(String(32))
    district_raw: Mapped[str | None] = mapped_column(String(64))
    subdivision: Mapped[str | None] = mapped_column(String(64))
    entities: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    extractor_version: Mapped[str | None] = mapped_column(String(64))
    petitioner_id: Mapped[int | None] = mapped_column(ForeignKey("petitioners.id"), index=True)
    track: Mapped[str | None] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(32))
    request_type: Mapped[str | None] = mapped_column(String(32))
    flags: Mapped[list[str] | None] = mapped_column(JsonType)
    status: Mapped[str | None] = mapped_column(String(16))  # auto | needs_review | not_accepted | merged; None = registered only
    priority: Mapped[str | None] = mapped_column(String(4))
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)  # 检举控告: supervisor role only
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("cases.id"))
    source: Mapped[str] = mapped_column(String(16), default="api")  # api | ingest | index
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}  # optimistic locking: stale writers get StaleDataError


class SuggestionRow(Base):
    """Ranked labels one model version suggested for one field of one case."""

    __tablename__ = "suggestions"
    __table_args__ = (UniqueConstraint("case_id", "model_version", "field", name="uq_suggestions_case_model_field"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    field: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DecisionRow(Base):
    """One decision in a case's history (the rule engine's, or a human's confirmation/override)."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    decision: Mapped[dict[str, Any]] = mapped_column(JsonType)  # triage.schemas.Decision as JSON
    rules_version: Mapped[str | None] = mapped_column(String(64))
    model_versions: Mapped[dict[str, str] | None] = mapped_column(JsonType)
    source: Mapped[str] = mapped_column(String(8))  # system | human
    confirmed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LinkRow(Base):
    """A suggested link from a case to an earlier case about the same matter (重复信访)."""

    __tablename__ = "links"
    __table_args__ = (UniqueConstraint("case_id", "linked_case_id", "linker_version", name="uq_links_case_linked_version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    linked_case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    probability: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[str]] = mapped_column(JsonType)
    same_petitioner: Mapped[bool] = mapped_column(Boolean, default=False)
    linker_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReviewTask(Base):
    """Work for a human reviewer: open → claimed → done."""

    __tablename__ = "review_tasks"
    __table_args__ = (Index("ix_review_tasks_queue", "state", "priority", "due_date"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    state: Mapped[str] = mapped_column(String(8), default="open")  # open | claimed | done
    reason: Mapped[str] = mapped_column(String(32))  # needs_review | model_changed | …
    priority: Mapped[str] = mapped_column(String(4), default="P2")
    due_date: Mapped[date | None] = mapped_column(Date)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}


class AuditEventRow(Base):
    """Append-only audit trail with a hash chain (triage.schemas.AuditEvent). Never updated or deleted:
    database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    case_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    model_versions: Mapped[dict[str, str] | None] = mapped_column(JsonType)
    rules_version: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ModelVersion(Base):
    """A registered model artifact; at most one active per kind."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), default="classifier")
    name: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activated_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key: only its sha256 is stored; the plaintext is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # clerk | reviewer | supervisor | admin | auditor
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """The stored response of a request made with an Idempotency-Key header."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key", name="uq_idempotency_keys_api_key_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobRun(Base):
    """A resumable batch job: parameters, state and the checkpoint to resume from."""

    __tablename__ = "job_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed | cancelled
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseBand(Base):
    """MinHash-LSH band hashes of a case (signed 64-bit), for near-duplicate candidates."""

    __tablename__ = "case_bands"
    __table_args__ = (Index("ix_case_bands_band", "band", "case_id"),)

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    band: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class CasePetitionerKey(Base):
    """Keyed petitioner hashes of a case (ID number and/or phone), for same-petitioner candidates."""

    __tablename__ = "case_petitioner_keys"
    __table_args__ = (Index("ix_case_petitioner_keys_key", "key", "case_id"),)

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)


class CaseVector(Base):
    """A case's semantic vector (float32 bytes). `seq` grows with every write so readers can
    refresh their in-memory ANN mirror incrementally (rows with seq > the last one seen)."""

    __tablename__ = "case_vectors"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), unique=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
