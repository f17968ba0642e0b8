"""Review workflow, idempotent writes, rate limit and feedback export through the API (in-process, real store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.support import app_env, auth, register, running_app
from tests.factories import FAKE_ID, FAKE_PHONE

TEXT_A = "渝中区某小区物业公司连续三天停水停电，老人小孩生活困难，请住建部门依法查处。"
TEXT_B = "九龙坡区一家物流公司拖欠我三个月工资共一万二千元，请人社部门帮忙追讨。"
TEXT_C = "南岸区某路段路灯坏了两个月没人修，晚上出行很不安全，请市政部门尽快维修。"


@pytest.fixture()
def env(tmp_path, db_url: str) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with app_env(db_url, tmp_path) as env:
        env["keys"]["reviewer2"] = env["store"].create_api_key("second-reviewer", "reviewer")[1]
        yield env


def test_review_claim_decide_merge_split_and_audit(env: dict[str, Any]) -> None:
    client, keys = env["client"], env["keys"]
    rv, rv2, sup = auth(keys["reviewer"]), auth(keys["reviewer2"]), auth(keys["supervisor"])
    a = register(env, TEXT_A, petitioner={"name": "李四", "phone": FAKE_PHONE})
    b = register(env, TEXT_B)
    c = register(env, TEXT_C)
    queue = client.get("/api/v1/review/queue", headers=rv).json()
    assert {i["case_id"] for i in queue["data"]} == {a["id"], b["id"], c["id"]}

    # Claim: one reviewer per task.
    task_a = a["review_task_id"]
    assert client.post(f"/api/v1/review/tasks/{task_a}/claim", headers=rv).json()["claimed_by"].startswith("reviewer-officer#")
    taken = client.post(f"/api/v1/review/tasks/{task_a}/claim", headers=rv2)
    assert taken.status_code == 409 and taken.json()["code"] == "T409"
    assert client.post(f"/api/v1/review/tasks/{task_a}/decide", json={"action": "confirm"}, headers=rv2).status_code == 409
    mine = client.get("/api/v1/review/queue", headers=rv, params={"mine": True}).json()
    assert [i["task_id"] for i in mine["data"]] == [task_a]

    # Override needs a reason code; unknown codes and no-op overrides are refused with T130.
    missing = client.post(f"/api/v1/review/tasks/{task_a}/decide", json={"action": "override", "track": "mediation"}, headers=rv)
    assert missing.status_code == 422 and missing.json()["code"] == "T130"
    unknown = client.post(f"/api/v1/review/tasks/{task_a}/decide",
                          json={"action": "override", "department": "no_such_dept", "reason_code": "wrong_department"},
                          headers=rv)
    assert unknown.status_code == 422 and unknown.json()["code"] == "T130"
    new_track = "mediation" if a["decision"]["track"] != "mediation" else "admin_duty"
    comment = f"已电话核实 {FAKE_PHONE}，属物业服务纠纷"
    done = client.post(f"/api/v1/review/tasks/{task_a}/decide", headers=rv, json={
        "action": "override", "track": new_track, "reason_code": "wrong_track", "comment": comment})
    assert done.status_code == 200, done.text
    assert done.json()["decision"]["track"] == new_track and done.json()["decision"]["status"] == "auto"
    again = client.post(f"/api/v1/review/tasks/{task_a}/decide", json={"action": "confirm"}, headers=rv)
    assert again.status_code == 409

    # Confirm (a reviewer deciding an open task takes it).
    ok = client.post(f"/api/v1/review/tasks/{b['review_task_id']}/decide", json={"action": "confirm"}, headers=rv2)
    assert ok.status_code == 200 and ok.json()["decision"]["track"] == b["decision"]["track"]

    # Merge c into b, then neither merging into a merged case nor merging twice works.
    merged = client.post(f"/api/v1/review/cases/{c['id']}/merge", json={"into": b["id"], "reason_code": "duplicate"}, headers=rv)
    assert merged.status_code == 200 and merged.json()["closed_tasks"] == [c["review_task_id"]]
    case_c = client.get(f"/api/v1/cases/{c['id']}", headers=rv).json()
    assert case_c["status"] == "merged" and case_c["merged_into"] == b["id"]
    twice = client.post(f"/api/v1/review/cases/{c['id']}/merge", json={"into": b["id"]}, headers=rv)
    assert twice.status_code == 422 and twice.json()["code"] == "T130"
    into_merged = client.post(f"/api/v1/review/cases/{a['id']}/merge", json={"into": c["id"]}, headers=rv)
    assert into_merged.status_code == 422

    # Split a into two matters: two new cases, each with an open task, keeping the petitioner.
    split = client.post(f"/api/v1/review/cases/{a['id']}/split", headers=rv, json={
        "parts": [{"text": "小区物业停水停电", "department": "housing"}, {"text": "物业收费不合理", "track": "mediation"}]})
    assert split.status_code == 200, split.text
    children = split.json()["children"]
    assert [ch["case_id"] for ch in children] == [f"{a['id']}-S1", f"{a['id']}-S2"]
    child = client.get(f"/api/v1/cases/{children[1]['case_id']}", headers=sup).json()
    assert child["track"] == "mediation" and child["status"] == "needs_review"
    assert child["petitioner"]["phone"] == FAKE_PHONE  # supervisor sees the parent's petitioner
    open_ids = {i["case_id"] for i in client.get("/api/v1/review/queue", headers=rv).json()["data"]}
    assert {ch["case_id"] for ch in children} <= open_ids

    # Every action is in the audit trail with who, before → after, reason and versions; the chain holds.
    events = client.get("/api/v1/audit", params={"case_id": a["id"]}, headers=auth(keys["auditor"])).json()["data"]
    actions = [e["action"] for e in events]
    assert actions == ["triage", "claim", "override", "split"]
    override = events[2]
    assert override["actor"].startswith("reviewer-officer#") and override["role"] == "reviewer"
    assert override["before"]["track"] == a["decision"]["track"] and override["after"]["track"] == new_track
    assert override["reason_code"] == "wrong_track"
    assert override["rules_version"] == "test-rules-1" and override["model_versions"]["track"]
    assert FAKE_PHONE not in override["comment"] and "属物业服务纠纷" in override["comment"]
    verify = client.get("/api/v1/audit/verify", headers=auth(keys["auditor"])).json()
    assert verify["ok"] is True and verify["checked"] >= 10

    # Override rates: a's track was overridden, b's confirmed; merges are not review decisions.
    stats = client.get("/api/v1/review/stats", headers=auth(keys["supervisor"])).json()
    assert stats["decided"] == 2 and stats["overridden"] == 1 and stats["rate"] == 0.5
    track_stats = stats["per_class"]["track"]
    assert track_stats[a["decision"]["track"]]["overridden"] >= 1
    assert stats["per_rule"]["T01_test"] == {"decided": 2, "overridden": 1, "rate": 0.5}


def test_review_queue_filters_and_sorting(env: dict[str, Any]) -> None:
    client, rv = env["client"], auth(env["keys"]["reviewer"])
    cases = [register(env, t) for t in (TEXT_A, TEXT_B, TEXT_C)]
    items = client.get("/api/v1/review/queue", headers=rv, params={"sort": "confidence", "order": "desc"}).json()["data"]
    scores = [i["confidence"] for i in items]
    assert len(scores) == 3 and all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    # Shown scores are rounded: cut halfway between the two lowest distinct shown values (or above all of them).
    distinct = sorted(set(scores))
    threshold = (distinct[0] + distinct[1]) / 2 if len(distinct) > 1 else min(1.0, distinct[0] + 0.00005)
    high = client.get("/api/v1/review/queue", headers=rv, params={"min_confidence": threshold}).json()
    expected = {i["case_id"] for i in items if i["confidence"] > threshold}
    assert {i["case_id"] for i in high["data"]} == expected and len(expected) < 3
    track = cases[1]["decision"]["track"]
    by_track = client.get("/api/v1/review/queue", headers=rv, params={"track": track}).json()
    assert by_track["count"] >= 1 and all(i["track"] == track for i in by_track["data"])
    none = client.get("/api/v1/review/queue", headers=rv, params={"district": "城口县", "priority": "P0"}).json()
    assert none == {"data": [], "count": 0, "page": 1, "page_size": 50}
    bad = client.get("/api/v1/review/queue", headers=rv, params={"sort": "name"})
    assert bad.status_code == 422 and bad.json()["code"] == "T100"


def test_idempotency_key_replays_and_refuses_other_bodies(env: dict[str, Any]) -> None:
    client, store = env["client"], env["store"]
    headers = {**auth(env["keys"]["clerk"]), "Idempotency-Key": "intake-2026-0001"}
    first = client.post("/api/v1/petitions/triage", json={"text": TEXT_A}, headers=headers)
    second = client.post("/api/v1/petitions/triage", json={"text": TEXT_A}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json() == second.json()
    assert store.count_cases() == 1
    other = client.post("/api/v1/petitions/triage", json={"text": TEXT_B}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "T120"
    bad = client.post("/api/v1/petitions/triage", json={"text": TEXT_B}, headers={**headers, "Idempotency-Key": "has space"})
    assert bad.status_code == 422 and bad.json()["code"] == "T121"
    assert store.count_cases() == 1
    # A lost response after the case was stored: the retry finds the same case (derived id), nothing doubles.
    lost = {**headers, "Idempotency-Key": "intake-2026-0002"}
    r1 = client.post("/api/v1/petitions/triage", json={"text": TEXT_C}, headers=lost)
    from triage.store.models import IdempotencyKey

    with store.write() as s:
        s.query(IdempotencyKey).filter(IdempotencyKey.key == "intake-2026-0002").delete()
    r2 = client.post("/api/v1/petitions/triage", json={"text": TEXT_C}, headers=lost)
    assert r2.status_code == 200 and r2.json()["outcome"] == "unchanged" and r2.json()["id"] == r1.json()["id"]
    assert r2.json()["decision"] == r1.json()["decision"]
    assert store.count_cases() == 2


def test_same_id_different_content_is_409(env: dict[str, Any]) -> None:
    client, h = env["client"], auth(env["keys"]["clerk"])
    assert client.post("/api/v1/petitions/triage", json={"id": "CQ-T-1", "text": TEXT_A}, headers=h).status_code == 201
    same = client.post("/api/v1/petitions/triage", json={"id": "CQ-T-1", "text": TEXT_A}, headers=h)
    assert same.status_code == 200 and same.json()["outcome"] == "unchanged"
    clash = client.post("/api/v1/petitions/triage", json={"id": "CQ-T-1", "text": TEXT_B}, headers=h)
    assert clash.status_code == 409 and clash.json()["code"] == "T409"
    assert TEXT_B not in clash.text


def test_dry_run_stores_nothing(env: dict[str, Any]) -> None:
    r = env["client"].post("/api/v1/petitions/triage?dry_run=true", json={"text": TEXT_B}, headers=auth(env["keys"]["clerk"]))
    assert r.status_code == 200 and r.json()["persisted"] is False
    assert env["store"].count_cases() == 0


def test_feedback_export_deidentified(env: dict[str, Any], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from training.feedback import export_feedback

    client, rv = env["client"], auth(env["keys"]["reviewer"])
    text = f"我叫王小明，身份证{FAKE_ID}，电话{FAKE_PHONE}，住渝中区某街道8栋2单元301室，小区物业停水三天，请处理。"
    a = register(env, text, petitioner={"name": "王小明", "id_number": FAKE_ID, "phone": FAKE_PHONE})
    register(env, TEXT_B)  # not reviewed: not exported
    r = client.post(f"/api/v1/review/tasks/{a['review_task_id']}/decide", headers=rv,
                    json={"action": "override", "department": "urban" if a["decision"]["department"] != "urban" else "housing",
                          "reason_code": "wrong_department"})
    assert r.status_code == 200
    out = tmp_path / "feedback.jsonl"
    counts = export_feedback(env["store"], out)
    assert counts == {"records": 1, "overridden": 1}
    [record] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["id"] == a["id"] and record["department"] == r.json()["decision"]["department"]
    assert record["track"] and record["overridden"] is True and record["source"] == "feedback"
    for secret in (FAKE_ID, FAKE_PHONE, "8栋2单元301室"):
        assert secret not in record["text"]
    assert "渝中区" in record["text"] and "petitioner" not in record


def test_rate_limit_per_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with running_app(f"sqlite:///{tmp_path / 'rl.db'}", tmp_path, rate_limit_per_second=0.01, rate_limit_burst=3) as (
            _app, client, keys):
        codes = [client.get("/api/v1/review/queue", headers=auth(keys["reviewer"])).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = client.get("/api/v1/review/queue", headers=auth(keys["reviewer"]))
        assert limited.json()["code"] == "T429" and int(limited.headers["retry-after"]) >= 1
        # Another key has its own bucket.
        assert client.get("/api/v1/review/queue", headers=auth(keys["supervisor"])).status_code == 200
