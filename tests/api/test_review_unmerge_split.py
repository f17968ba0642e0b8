"""Un-merge (撤销并案) and split-off cases that link like triaged ones, through the API (in-process, real store,
SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.support import app_env, auth, register
from tests.factories import FAKE_PHONE

TEXT_A = "渝中区某小区物业公司连续三天停水停电，老人小孩生活困难，请住建部门依法查处。"
TEXT_B = "渝中区那个小区物业又停水停电了，已经好几天，老人小孩没法生活，请住建部门赶紧查处物业公司。"
TEXT_AUTO = "【自动】南岸区某路段路灯坏了两个月没人修，晚上出行很不安全，请市政部门尽快维修。"
PART_1 = "江北区观音桥某小区地下车库长期被物业占用出租，业主的车没有地方停，物业还按月收取高额停车费，请住建部门查处。"
PART_2 = "江北区观音桥某小区的电梯三个月内坏了五次，有一次把老人困在里面一个多小时，物业一直拖着不修，请市场监管部门督促检修。"

AGAIN = "江北区观音桥那个小区的电梯还是三天两头坏，上次反映后物业仍然拖着不修，老人又被困了，再次请市场监管部门督促检修电梯。"


@pytest.fixture()
def env(tmp_path, db_url: str) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with app_env(db_url, tmp_path) as env:
        yield env


def test_unmerge_restores_the_decision_reopens_review_and_is_audited(env: dict[str, Any]) -> None:
    client, keys = env["client"], env["keys"]
    rv = auth(keys["reviewer"])
    a, b = register(env, TEXT_A), register(env, TEXT_B)
    assert b["decision"]["status"] == "needs_review"
    merged = client.post(f"/api/v1/review/cases/{b['id']}/merge", json={"into": a["id"]}, headers=rv)
    assert merged.status_code == 200 and merged.json()["closed_tasks"] == [b["review_task_id"]]
    version = client.get(f"/api/v1/cases/{b['id']}", headers=rv).json()["version"]

    # A reason code is required; an unknown one, or a stale version, is refused without changing anything.
    missing = client.post(f"/api/v1/review/cases/{b['id']}/unmerge", json={}, headers=rv)
    assert missing.status_code == 422 and missing.json()["code"] == "T100"
    unknown = client.post(f"/api/v1/review/cases/{b['id']}/unmerge", json={"reason_code": "because"}, headers=rv)
    assert unknown.status_code == 422 and unknown.json()["code"] == "T130"
    other = client.post(f"/api/v1/review/cases/{b['id']}/unmerge", json={"reason_code": "other"}, headers=rv)
    assert other.status_code == 422 and other.json()["code"] == "T130"  # "other" needs a comment
    stale = client.post(f"/api/v1/review/cases/{b['id']}/unmerge",
                        json={"reason_code": "not_duplicate", "expected_version": version - 1}, headers=rv)
    assert stale.status_code == 409 and stale.json()["code"] == "T409"
    assert client.get(f"/api/v1/cases/{b['id']}", headers=rv).json()["status"] == "merged"

    body = {"reason_code": "not_duplicate", "comment": f"来电 {FAKE_PHONE} 说明并非同一小区", "expected_version": version}
    undone = client.post(f"/api/v1/review/cases/{b['id']}/unmerge", json=body, headers=rv)
    assert undone.status_code == 200, undone.text
    out = undone.json()
    assert out["unmerged_from"] == a["id"] and out["unchanged"] is False and out["case_version"] > version
    assert out["decision"]["status"] == "needs_review" and out["decision"]["merged_into"] is None
    assert out["decision"]["track"] == b["decision"]["track"]
    case_b = client.get(f"/api/v1/cases/{b['id']}", headers=rv).json()
    assert case_b["status"] == "needs_review" and case_b["merged_into"] is None
    assert case_b["decisions"][-1]["source"] == "system"  # the restored system decision, not an officer's
    queue = client.get("/api/v1/review/queue", headers=rv).json()["data"]
    reopened = [i for i in queue if i["case_id"] == b["id"]]
    assert [(i["task_id"], i["task_reason"]) for i in reopened] == [(out["task_id"], "unmerged")]

    # Idempotent: again (same or another body) → the earlier result, nothing written; with Idempotency-Key → replay.
    again = client.post(f"/api/v1/review/cases/{b['id']}/unmerge", json={"reason_code": "not_duplicate"}, headers=rv)
    assert again.status_code == 200 and again.json()["unchanged"] is True
    assert again.json()["audit_seq"] == out["audit_seq"] and again.json()["task_id"] == out["task_id"]
    never = client.post(f"/api/v1/review/cases/{a['id']}/unmerge", json={"reason_code": "not_duplicate"}, headers=rv)
    assert never.status_code == 422 and never.json()["code"] == "T130"

    # The reopened task is reviewed like any other: confirming forwards the case.
    done = client.post(f"/api/v1/review/tasks/{out['task_id']}/decide", json={"action": "confirm"}, headers=rv)
    assert done.status_code == 200 and done.json()["decision"]["status"] == "auto"

    events = client.get("/api/v1/audit", params={"case_id": b["id"]}, headers=auth(keys["auditor"])).json()["data"]
    assert [e["action"] for e in events] == ["triage", "merge", "unmerge", "confirm"]
    ev = events[2]
    assert ev["before"]["status"] == "merged" and ev["before"]["merged_into"] == a["id"]
    assert ev["after"]["status"] == "needs_review" and ev["after"]["merged_into"] is None
    assert ev["after"]["task_id"] == out["task_id"] and ev["reason_code"] == "not_duplicate"
    assert ev["actor"].startswith("reviewer-officer#") and ev["role"] == "reviewer"
    assert ev["rules_version"] == "test-rules-1" and ev["model_versions"]["track"]
    assert FAKE_PHONE not in ev["comment"]
    assert client.get("/api/v1/audit/verify", headers=auth(keys["auditor"])).json()["ok"] is True
    from tests.api.test_api_e2e import cli

    # `triage audit verify` exits 1 on a broken chain
    cli({"TRIAGE_PII_KEY_FILE": str(env["tmp"] / "pii.key")}, "audit", "verify", "--db", env["db_url"])

    # The un-merge is not a review decision of its own: only the confirmation counts.
    stats = client.get("/api/v1/review/stats", headers=auth(keys["supervisor"])).json()
    assert stats["decided"] == 1 and stats["overridden"] == 0


def test_unmerge_of_a_forwarded_case_opens_no_task(env: dict[str, Any]) -> None:
    client, rv = env["client"], auth(env["keys"]["supervisor"])
    a, c = register(env, TEXT_A), register(env, TEXT_AUTO)
    assert c["decision"]["status"] == "auto" and c["review_task_id"] is None
    assert client.post(f"/api/v1/review/cases/{c['id']}/merge", json={"into": a["id"]}, headers=rv).status_code == 200
    undone = client.post(f"/api/v1/review/cases/{c['id']}/unmerge", json={"reason_code": "not_duplicate"},
                         headers={**rv, "Idempotency-Key": "unmerge-c-1"})
    assert undone.status_code == 200 and undone.json()["decision"]["status"] == "auto" and undone.json()["task_id"] is None
    replay = client.post(f"/api/v1/review/cases/{c['id']}/unmerge", json={"reason_code": "not_duplicate"},
                         headers={**rv, "Idempotency-Key": "unmerge-c-1"})
    assert replay.headers["idempotent-replayed"] == "true" and replay.json() == undone.json()
    assert env["store"].verify_audit().ok


def test_unmerge_of_a_confidential_case_is_for_the_supervisor_only(env: dict[str, Any]) -> None:
    client = env["client"]
    secret = register(env, "彭水县某村党支部书记侵占征地补偿款二十多万元，请纪委调查。（举报人要求对身份保密）")
    earlier = register(env, "彭水县某村支书侵占征地补偿款，账目不公开，请纪委调查核实。（要求保密）")
    sup, rv = auth(env["keys"]["supervisor"]), auth(env["keys"]["reviewer"])
    assert client.post(f"/api/v1/review/cases/{secret['id']}/merge", json={"into": earlier["id"]}, headers=sup).status_code == 200
    hidden = client.post(f"/api/v1/review/cases/{secret['id']}/unmerge", json={"reason_code": "not_duplicate"}, headers=rv)
    assert hidden.status_code == 404 and hidden.json()["code"] == "T404"
    ok = client.post(f"/api/v1/review/cases/{secret['id']}/unmerge", json={"reason_code": "not_duplicate"}, headers=sup)
    assert ok.status_code == 200 and ok.json()["decision"]["status"] == "needs_review"


def test_split_parts_get_entities_and_link_data(env: dict[str, Any]) -> None:
    from sqlalchemy import func, select

    from triage.store.models import CaseBand, CasePetitionerKey, CaseVector

    client, store = env["client"], env["store"]
    petitioner = {"name": "赵六", "phone": FAKE_PHONE}
    parent = register(env, PART_1 + PART_2, petitioner=petitioner, submitted_at="2026-03-01T10:00:00+08:00")
    split = client.post(f"/api/v1/review/cases/{parent['id']}/split", headers=auth(env["keys"]["reviewer"]),
                        json={"parts": [{"text": PART_1}, {"text": PART_2}]})
    assert split.status_code == 200, split.text
    child_ids = [c["case_id"] for c in split.json()["children"]]
    for cid in child_ids:
        case = store.get_case(cid, detail=False)
        assert case.entities and case.extractor_version
        with store.read() as s:
            assert s.scalar(select(func.count()).select_from(CaseBand).where(CaseBand.case_id == cid)) > 0
            assert s.scalar(select(func.count()).select_from(CaseVector).where(CaseVector.case_id == cid)) == 1
            assert s.scalar(select(func.count()).select_from(CasePetitionerKey).where(CasePetitionerKey.case_id == cid)) == 1
        assert "观音桥" in str(case.entities)  # the part's own entities, extracted from its text

    # A month later the same petitioner comes back about the elevator: the new case links to the second part.
    again = register(env, AGAIN, petitioner=petitioner, submitted_at="2026-04-02T10:00:00+08:00")
    linked = {lk["case_id"]: lk["probability"] for lk in again["links"]}
    assert child_ids[1] in linked, again["links"]
