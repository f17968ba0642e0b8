"""Schema: migrations reach head, match the models, and keep audit_events append-only in the database."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.conftest import ROOT
from triage.errors import StageNotReadyError
from triage.store import CaseStore, current_revision, head_revision, make_engine, upgrade
from triage.store.models import Base


def test_migrations_head_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert upgrade(engine) == head_revision()  # idempotent
    engine.dispose()


def test_migrations_audit_events_refuse_update_and_delete(db_url: str) -> None:
    store = CaseStore(make_engine(db_url), pii_secret=b"k", auto_upgrade=True)
    store.append_audit(actor="u1", role="admin", action="test")
    for stmt in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    assert store.verify_audit().ok
    store.engine.dispose()


def test_store_refuses_outdated_schema_without_auto_upgrade(db_url: str) -> None:
    store = CaseStore(make_engine(db_url), pii_secret=b"k", auto_upgrade=False)
    with pytest.raises(StageNotReadyError, match="triage db upgrade"):
        store.count_cases()
    store.engine.dispose()


@pytest.mark.e2e
def test_db_cli_upgrade_and_current(db_url: str) -> None:
    run = [sys.executable, "-m", "triage_cli.main", "db"]
    behind = subprocess.run([*run, "current", "--url", db_url], cwd=ROOT, capture_output=True, text=True)
    assert behind.returncode == 1 and "(empty)" in behind.stdout
    up = subprocess.run([*run, "upgrade", "--url", db_url], cwd=ROOT, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    assert f"at revision {head_revision()}" in up.stdout
    now = subprocess.run([*run, "current", "--url", db_url], cwd=ROOT, capture_output=True, text=True)
    assert now.returncode == 0 and f"current {head_revision()}" in now.stdout
