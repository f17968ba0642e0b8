"""The case store: cases, decisions, review queue, audit trail, API keys, jobs and link index.

SQLite (embedded default, WAL) or PostgreSQL through SQLAlchemy 2; schema managed by Alembic
migrations shipped in this package (`triage db upgrade`).
"""

from triage.store.engine import DEFAULT_URL, make_engine
from triage.store.errors import CaseConflictError, CaseNotFoundError, ConflictError, StaleVersionError, StoreError
from triage.store.keys import load_pii_secret
from triage.store.migrate import current_revision, ensure_schema, head_revision, upgrade
from triage.store.records import CaseFilter, CasePage, CaseRecord, SaveOutcome
from triage.store.repository import CaseStore, Registration, gen_case_id, open_store, petitioner_keys

__all__ = [
    "DEFAULT_URL",
    "CaseConflictError",
    "CaseFilter",
    "CaseNotFoundError",
    "CasePage",
    "CaseRecord",
    "CaseStore",
    "ConflictError",
    "Registration",
    "SaveOutcome",
    "StaleVersionError",
    "StoreError",
    "current_revision",
    "ensure_schema",
    "gen_case_id",
    "head_revision",
    "load_pii_secret",
    "make_engine",
    "open_store",
    "petitioner_keys",
    "upgrade",
]
