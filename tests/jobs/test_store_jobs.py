"""`triage reclassify --db`: stored cases in, change report out; --apply writes through the case store.

Real store (SQLite file and PostgreSQL), real model, real rule file. Cases are registered from the
written corpus dev split; some get a system decision and some an officer's before the job runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from tests.jobs.test_reclassify import corpus
from training.jobs import ReclassifyRequest, reclassify
from training.jobs.store_io import MODEL_CHANGED
from triage.schemas import Decision, Petition
from triage.store import CaseStore, Registration
from triage.store.models import AuditEventRow, DecisionRow, ReviewTask, SuggestionRow

AS_OF = datetime.fromisoformat("2026-11-26T09:00:00+08:00")
SECRET = "jobs-test-secret"


@pytest.fixture()
def store(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CaseStore]:
    monkeypatch.setenv("TRIAGE_PII_KEY", SECRET)  # the job opens the store with the service's secret
    s = CaseStore.from_url(db_url, pii_secret=SECRET.encode(), auto_upgrade=True)
    s.ensure_ready()
    yield s
    s.engine.dispose()


def table_counts(store: CaseStore) -> dict[str, int]:
    with store.read() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0
                for t in (SuggestionRow, DecisionRow, ReviewTask, AuditEventRow)}


def request(db_url: str, out: Path, **kw: object) -> ReclassifyRequest:
    return ReclassifyRequest(out_dir=out, db_url=db_url, ner=False, checkpoint_every=10, as_of=AS_OF, progress=False,
                             **kw)  # type: ignore[arg-type]


def other(codes: list[str], code: str) -> str:
    return next(c for c in codes if c != code)


def test_reclassify_store_dry_run_then_apply_is_idempotent(store: CaseStore, db_url: str, tmp_path: Path,
                                                           taxonomy) -> None:  # type: ignore[no-untyped-def]
    records = corpus(30)
    outcomes = store.register_many([Registration(Petition.model_validate(r)) for r in records])
    assert set(outcomes) == {"inserted"}

    # Dry run: a report, nothing written to the cases.
    before = table_counts(store)
    dry = reclassify(request(db_url, tmp_path / "dry"))
    assert dry.counts is not None and dry.counts.processed == 30 and dry.counts.bad == 0
    assert table_counts(store) == before
    new = {r["case_id"]: r for r in pq.read_table(tmp_path / "dry" / "cases.parquet").to_pylist()}
    assert all(r["old_track"] is None for r in new.values())  # registered only: no current decision

    ids = sorted(new)
    human_differs, human_agrees, system_old = ids[0], ids[1], ids[2]
    tracks = [t.code for t in taxonomy.tracks]
    depts = [d.code for d in taxonomy.departments]
    hd = new[human_differs]
    store.record_decision(human_differs, Decision(track=other(tracks, hd["new_track"]), department=hd["new_department"],
                                                  status="auto"), actor="officer-7", role="reviewer")
    ha = new[human_agrees]
    store.record_decision(human_agrees, Decision(track=ha["new_track"], department=ha["new_department"], status="auto"),
                          actor="officer-7", role="reviewer")
    so = new[system_old]
    store.record_decision(system_old, Decision(track=so["new_track"], department=other(depts, so["new_department"]),
                                               status="auto"), actor="svc", role="admin", source="system")
    human_track = store.get_case(human_differs, detail=False).track  # type: ignore[union-attr]

    applied = reclassify(request(db_url, tmp_path / "apply", apply=True))
    assert applied.counts is not None and applied.counts.processed == 30
    a = applied.applied
    assert a["decided"] == 28  # 27 registered-only cases + the system decision that changed
    assert a["review_model_changed"] == 1 and a["agrees_with_officer"] == 1
    assert a["suggestions"] == 30 * 4 and a["entities_updated"] == 30
    rows = {r["case_id"]: r for r in pq.read_table(tmp_path / "apply" / "cases.parquet").to_pylist()}
    assert rows[system_old]["old_department"] != rows[system_old]["new_department"]
    assert rows[human_differs]["old_track"] == human_track

    # The officer's decision stands; the case waits in the review queue with reason model_changed.
    case = store.get_case(human_differs)
    assert case is not None and case.track == human_track and case.decisions[-1].source == "human"
    assert [t.reason for t in case.review_tasks] == [MODEL_CHANGED]
    changed_case = store.get_case(system_old)
    assert changed_case is not None and changed_case.department == rows[system_old]["new_department"]
    assert changed_case.decisions[-1].source == "system"
    fresh = store.get_case(ids[5])
    assert fresh is not None and fresh.track == rows[ids[5]]["new_track"] and fresh.extractor_version
    assert fresh.entities is not None
    events = store.audit_events(case_id=system_old)
    assert events[-1].action == "reclassify" and events[-1].actor == "reclassify-job"
    assert store.verify_audit().ok

    job = store.get_job(applied.job_id)
    assert job is not None and job.state == "done" and job.checkpoint and job.checkpoint["done"]

    # The same job again: already complete. Forced to run again over the same cases: changes nothing.
    after = table_counts(store)
    assert reclassify(request(db_url, tmp_path / "apply", apply=True)).already_complete
    rerun = reclassify(request(db_url, tmp_path / "apply", apply=True, restart=True))
    assert table_counts(store) == after
    assert rerun.applied.get("decided", 0) == 0 and rerun.applied.get("suggestions", 0) == 0
    assert rerun.applied["unchanged"] == 28 and rerun.applied["review_already_open"] == 1
    assert rerun.counts is not None and rerun.counts.entities_reused == 30  # stored by the first run
    assert store.verify_audit().ok
