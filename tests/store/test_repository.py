"""CaseStore on SQLite and PostgreSQL: idempotent writes, search, review, audit chain, keys, jobs."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.factories import FAKE_ID, FAKE_PHONE
from tests.store.builders import SECRET, decision, features, petition, result
from triage.store import CaseConflictError, CaseFilter, CaseStore, ConflictError, StaleVersionError, make_engine


@pytest.fixture()
def store(db_url: str) -> Iterator[CaseStore]:
    s = CaseStore(make_engine(db_url), pii_secret=SECRET, auto_upgrade=True)
    yield s
    s.engine.dispose()


def test_save_triage_inserts_everything_in_one_go(store: CaseStore) -> None:
    p = petition()
    out = store.save_triage(p, result(p), actor="clerk-1", role="clerk", features=features(1))
    assert out.outcome == "inserted" and out.review_task_id is not None and out.audit_seq == 1
    case = store.get_case("CQ-T-1")
    assert case is not None
    assert (case.status, case.track, case.department, case.priority) == ("needs_review", "admin_duty", "urban", "P1")
    assert (case.district, case.subdivision, case.confidential) == ("沙坪坝区", "小龙坎街道", False)
    assert case.submitted_at == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert [s.field for s in case.suggestions] == ["track"] and case.suggestions[0].labels[0]["label"] == "admin_duty"
    assert len(case.decisions) == 1 and case.decisions[0].source == "system"
    assert [(t.state, t.reason, str(t.due_date)) for t in case.review_tasks] == [("open", "needs_review", "2026-03-04")]
    pet = case.petitioner
    assert pet is not None
    masked_id = FAKE_ID[:3] + "*" * 11 + FAKE_ID[-4:]
    assert (pet.name_masked, pet.phone_masked, pet.id_number_masked) == ("王**", "138****1234", masked_id)
    assert (pet.name, pet.phone, pet.id_number) == ("王小明", FAKE_PHONE, FAKE_ID)  # raw: for the API's role masking only
    [event] = store.audit_events(case_id="CQ-T-1")
    assert event.action == "triage" and event.after is not None and event.after["status"] == "needs_review"
    # The audit event carries codes, never the text or identifiers.
    assert FAKE_PHONE not in event.model_dump_json() and "路灯" not in event.model_dump_json()


def test_save_triage_same_content_is_unchanged(store: CaseStore) -> None:
    p = petition()
    store.save_triage(p, result(p), actor="a", role="clerk")
    again = store.save_triage(p, result(p), actor="a", role="clerk")
    assert again.outcome == "unchanged" and again.audit_seq is None
    case = store.get_case(p.id or "")
    assert case is not None and len(case.decisions) == 1 and len(case.review_tasks) == 1
    assert len(store.audit_events()) == 1


def test_save_triage_same_id_other_content_is_a_conflict(store: CaseStore) -> None:
    p = petition()
    store.save_triage(p, result(p), actor="a", role="clerk")
    other = petition(text="楼上漏水到我家，物业不管")
    with pytest.raises(CaseConflictError) as exc:
        store.save_triage(other, result(other), actor="a", role="clerk")
    assert exc.value.code == "T409" and "CQ-T-1" in str(exc.value)
    assert "漏水" not in str(exc.value) and FAKE_PHONE not in str(exc.value)
    assert store.get_case("CQ-T-1").text == p.text  # type: ignore[union-attr]


def test_save_triage_attaches_to_a_case_registered_by_ingest(store: CaseStore) -> None:
    p = petition()
    assert store.register_case(p, features=features(2)) == "inserted"
    out = store.save_triage(p, result(p, decision(status="auto")), actor="a", role="clerk")
    assert out.outcome == "triaged" and out.review_task_id is None
    case = store.get_case(p.id or "")
    assert case is not None and case.status == "auto" and case.source == "ingest"


def test_save_triage_generates_an_id_and_stores_links(store: CaseStore) -> None:
    first = petition()
    store.save_triage(first, result(first), actor="a", role="clerk")
    p = petition(case_id=None, text="路灯还是没修好，再次反映")
    res = result(p, decision(status="auto"), links=[{"case_id": "CQ-T-1", "probability": 0.93, "reasons": ["同一信访人"],
                                                     "same_petitioner": True}])
    out = store.save_triage(p, res, actor="a", role="clerk")
    assert out.outcome == "inserted" and out.case_id.startswith("CQ-")
    case = store.get_case(out.case_id)
    assert case is not None
    assert [(lk.linked_case_id, lk.probability, lk.same_petitioner, lk.linker_version) for lk in case.links] == [
        ("CQ-T-1", 0.93, True, "lk-1")]
    # One petitioner (same keyed ID number), not two.
    assert case.petitioner is not None and case.petitioner.id == store.get_case("CQ-T-1").petitioner.id  # type: ignore[union-attr]


def test_confidential_cases_hidden_from_search_unless_asked(store: CaseStore) -> None:
    p = petition(case_id="CQ-T-2", text="村支书侵占集体资金，请求查处并为我保密")
    store.save_triage(p, result(p, decision(track="discipline", department="discipline_org", flags=["confidential"])),
                      actor="a", role="clerk")
    assert store.get_case("CQ-T-2").confidential  # type: ignore[union-attr]
    assert store.search(CaseFilter()).count == 0
    assert store.search(CaseFilter(include_confidential=True)).count == 1


def test_search_filters_and_pagination(store: CaseStore) -> None:
    for i in range(7):
        p = petition(case_id=f"S-{i}", text=f"第{i}件：{'噪声扰民' if i % 2 else '路灯不亮'}",
                     submitted_at=f"2026-03-0{i + 1}T09:00:00+08:00", petitioner=None)
        d = decision(status="auto" if i < 4 else "needs_review", department="urban" if i % 3 else "ecology")
        store.save_triage(p, result(p, d), actor="a", role="clerk")
    page1 = store.search(CaseFilter(), page=1, page_size=3)
    page3 = store.search(CaseFilter(), page=3, page_size=3)
    assert page1.count == 7 and [c.id for c in page1.data] == ["S-6", "S-5", "S-4"] and [c.id for c in page3.data] == ["S-0"]
    assert {c.id for c in store.search(CaseFilter(status="needs_review")).data} == {"S-4", "S-5", "S-6"}
    assert {c.id for c in store.search(CaseFilter(department="ecology")).data} == {"S-0", "S-3", "S-6"}
    assert {c.id for c in store.search(CaseFilter(text_contains="噪声")).data} == {"S-1", "S-3", "S-5"}
    assert store.search(CaseFilter(text_contains="100%")).count == 0  # LIKE wildcards are escaped
    window = CaseFilter(submitted_from=datetime(2026, 3, 2, 1, tzinfo=UTC), submitted_to=datetime(2026, 3, 4, 1, tzinfo=UTC))
    assert {c.id for c in store.search(window).data} == {"S-1", "S-2"}
    assert store.search(CaseFilter(district="沙坪坝区", priority="P1", track="admin_duty")).count == 7
    with pytest.raises(ValueError):
        store.search(page=0)


def test_register_many_reports_conflicts_without_aborting(store: CaseStore) -> None:
    from triage.store import Registration

    a, b = petition(case_id="R-1"), petition(case_id="R-2", text="另一件事")
    assert store.register_many([Registration(a), Registration(b)]) == ["inserted", "inserted"]
    c = petition(case_id="R-3", text="第三件")
    changed_b = petition(case_id="R-2", text="改过的内容")
    outcomes = store.register_many([Registration(a), Registration(changed_b), Registration(c)])
    assert outcomes == ["unchanged", "conflict", "inserted"]
    assert store.count_cases() == 3 and store.get_case("R-2").text == "另一件事"  # type: ignore[union-attr]
    with pytest.raises(CaseConflictError):
        store.register_case(changed_b)


def test_record_decision_optimistic_locking_and_audit(store: CaseStore) -> None:
    p = petition()
    store.save_triage(p, result(p), actor="a", role="clerk")
    v = store.get_case("CQ-T-1").version  # type: ignore[union-attr]
    new_v = store.record_decision("CQ-T-1", decision(status="auto", department="housing"), actor="rev-1", role="reviewer",
                                  expected_version=v, reason_code="wrong_department")
    assert new_v == v + 1
    with pytest.raises(StaleVersionError):
        store.record_decision("CQ-T-1", decision(status="auto"), actor="rev-2", role="reviewer", expected_version=v)
    case = store.get_case("CQ-T-1")
    assert case is not None and case.department == "housing" and [d.source for d in case.decisions] == ["system", "human"]
    assert case.decisions[-1].confirmed_by == "rev-1"
    last = store.audit_events(case_id="CQ-T-1")[-1]
    assert (last.action, last.before["department"], last.after["department"]) == ("override", "urban", "housing")  # type: ignore[index]


def test_review_task_claimed_once(store: CaseStore) -> None:
    p = petition()
    task_id = store.save_triage(p, result(p), actor="a", role="clerk").review_task_id
    assert task_id is not None
    assert store.claim_review_task(task_id, actor="rev-1", role="reviewer").state == "claimed"
    with pytest.raises(ConflictError):
        store.claim_review_task(task_id, actor="rev-2", role="reviewer")
    assert store.resolve_review_task(task_id, actor="rev-1", role="reviewer").state == "done"
    assert store.list_review_tasks(state="open") == []
    t2 = store.open_review_task("CQ-T-1", reason="model_changed", priority="P2")
    assert [t.id for t in store.list_review_tasks()] == [t2]


def test_api_keys_hash_only_verify_and_revoke(store: CaseStore) -> None:
    rec, plaintext = store.create_api_key("desk-1", "clerk")
    assert plaintext.startswith("trk_") and store.verify_api_key(plaintext) == rec
    assert store.verify_api_key(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert store.verify_api_key("garbage") is None
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT key_hash FROM api_keys").scalar_one()
    assert plaintext not in stored and len(stored) == 64
    assert store.revoke_api_key(rec.id) and not store.revoke_api_key(rec.id)
    assert store.verify_api_key(plaintext) is None
    assert [k.revoked_at is not None for k in store.list_api_keys()] == [True]
    with pytest.raises(ValueError):
        store.create_api_key("x", "superuser")


def test_idempotency_records(store: CaseStore) -> None:
    rec, _ = store.create_api_key("desk-1", "clerk")
    assert store.get_idempotency(rec.id, "k1") is None
    first = store.put_idempotency(rec.id, "k1", request_hash="h1", status_code=201, response={"case_id": "A"})
    second = store.put_idempotency(rec.id, "k1", request_hash="h2", status_code=200, response={"case_id": "B"})
    assert second.request_hash == "h1" and second.response == {"case_id": "A"} == first.response
    assert store.get_idempotency(rec.id, "k1") == first


def test_job_checkpoints_resume(store: CaseStore) -> None:
    job = store.start_job("job-1", "reclassify", {"model": "m-2"})
    assert job.state == "running" and job.checkpoint is None
    store.save_checkpoint("job-1", {"after_case_id": "S-3"}, {"done": 4})
    store.finish_job("job-1", state="failed")
    resumed = store.start_job("job-1", "reclassify")
    assert (resumed.state, resumed.checkpoint, resumed.counts) == ("running", {"after_case_id": "S-3"}, {"done": 4})
    with pytest.raises(ConflictError):
        store.start_job("job-1", "ingest")
    store.finish_job("job-1", counts={"done": 7})
    assert store.get_job("job-1").state == "done"  # type: ignore[union-attr]


def test_model_versions_one_active_per_kind(store: CaseStore) -> None:
    store.register_model_version("m-1", "models/a", "a" * 64)
    store.register_model_version("m-2", "models/b", "b" * 64, {"labels": {}})
    assert store.register_model_version("m-1", "models/a", "a" * 64).name == "m-1"
    with pytest.raises(ConflictError):
        store.register_model_version("m-1", "models/a", "c" * 64)
    store.activate_model_version("m-1", actor="admin-1")
    store.activate_model_version("m-2", actor="admin-1")
    assert store.active_model_version().name == "m-2"  # type: ignore[union-attr]
    assert store.audit_events()[-1].before == {"active": ["m-1"]}


def test_audit_chain_detects_tampering(store: CaseStore) -> None:
    for i in range(5):
        store.append_audit(actor=f"u{i}", role="reviewer", action="confirm", case_id=f"C{i}", after={"i": i, "p": 0.1 * i})
    ok = store.verify_audit()
    assert ok.ok and ok.checked == 5
    _drop_audit_triggers(store)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    bad = store.verify_audit()
    assert (bad.ok, bad.first_broken_seq, bad.problem, bad.checked) == (False, 3, "hash_mismatch", 2)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_events WHERE seq >= 3")
        conn.exec_driver_sql("DELETE FROM audit_events WHERE seq = 1")
    gap = store.verify_audit()
    assert (gap.ok, gap.first_broken_seq, gap.problem) == (False, 1, "seq_gap")


def _drop_audit_triggers(store: CaseStore) -> None:
    """Only in the test's own database: simulate an attacker with raw database access."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER audit_events_append_only ON audit_events")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_delete")


def test_audit_appends_from_threads_keep_one_chain(store: CaseStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(15):
                store.append_audit(actor=f"t{t}", role="reviewer", action="confirm", after={"i": i})
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    v = store.verify_audit()
    assert v.ok and v.checked == 60


def _append_in_process(url: str, n: int, tag: str) -> None:
    s = CaseStore(make_engine(url), pii_secret=SECRET, auto_upgrade=False)
    for i in range(n):
        s.append_audit(actor=tag, role="admin", action="test", after={"i": i})
        p = petition(case_id=f"{tag}-{i}", text=f"{tag} 第{i}件")
        s.save_triage(p, result(p), actor=tag, role="clerk", features=features(i))
    s.engine.dispose()


def test_audit_appends_from_processes_keep_one_chain(store: CaseStore, db_url: str) -> None:
    store.ensure_ready()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_in_process, args=(db_url, 12, f"P{k}")) for k in range(2)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(timeout=120)
    assert [pr.exitcode for pr in procs] == [0, 0]
    v = store.verify_audit()
    assert v.ok and v.checked == 48
    assert store.count_cases() == 24
