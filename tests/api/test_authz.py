"""Every role × every endpoint: status codes, confidential cases invisible (404), masking by role.

In-process (TestClient) over a real SQLite case store; the table of expectations is derived from
serving.auth.PERMISSIONS, and a second, explicit table pins the intended policy so a change to
PERMISSIONS cannot silently loosen it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serving.auth import PERMISSIONS
from serving.settings import ServiceSettings
from tests.api.support import ROLES, auth, running_app
from tests.factories import FAKE_ID, FAKE_PHONE

NAME = "王小明"
NORMAL_TEXT = f"我叫王小明，身份证号{FAKE_ID}，电话{FAKE_PHONE}。渝中区某小区物业公司连续三天停水，请住建部门处理。"
CONFIDENTIAL_TEXT = "彭水县某村党支部书记侵占征地补偿款二十多万元，账目不公开。请纪委调查。（举报人要求对身份保密）"
INFORMANT_PHONE = "13900002222"
OTHER_TEXT = "沙坪坝区某路口烧烤店油烟扰民，晚上吵得睡不着，请城管处理。"

# The intended policy, written out (roles allowed per permission).
POLICY = {
    "triage": {"clerk", "reviewer", "supervisor"},
    "case_read": {"clerk", "reviewer", "supervisor"},
    "review": {"reviewer", "supervisor"},
    "unmerge": {"reviewer", "supervisor"},
    "review_stats": {"supervisor", "auditor", "admin"},
    "model_read": {"admin", "supervisor", "auditor"},
    "model_admin": {"admin"},
    "audit_read": {"auditor", "admin"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("authz")
    with running_app(f"sqlite:///{tmp / 'authz.db'}", tmp) as (app, client, keys):
        store = app.state.store
        keys["clerk2"] = store.create_api_key("second-clerk", "clerk")[1]
        petitioner = {"name": NAME, "id_number": FAKE_ID, "phone": FAKE_PHONE}
        normal = client.post("/api/v1/petitions/triage", json={"text": NORMAL_TEXT, "petitioner": petitioner},
                             headers=auth(keys["clerk"]))
        confidential = client.post("/api/v1/petitions/triage",
                                   json={"text": CONFIDENTIAL_TEXT, "petitioner": {"phone": INFORMANT_PHONE}},
                                   headers=auth(keys["clerk"]))
        other = client.post("/api/v1/petitions/triage", json={"text": OTHER_TEXT}, headers=auth(keys["clerk2"]))
        for r in (normal, confidential, other):
            assert r.status_code == 201, r.text
        assert confidential.json()["decision"]["flags"] == ["confidential"]
        yield {"app": app, "client": client, "keys": keys, "store": store, "normal": normal.json(),
               "confidential": confidential.json(), "other": other.json()}


def test_policy_table_matches_permissions() -> None:
    assert {k: set(v) for k, v in PERMISSIONS.items()} == POLICY


# (method, path template, json body, permission, status for an allowed role)
ENDPOINTS: list[tuple[str, str, Any, str, int]] = [
    ("POST", "/api/v1/petitions/triage?dry_run=true", {"text": OTHER_TEXT}, "triage", 200),
    ("GET", "/api/v1/cases/{normal}", None, "case_read", 200),
    ("GET", "/api/v1/cases", None, "case_read", 200),
    ("GET", "/api/v1/review/queue", None, "review", 200),
    ("POST", "/api/v1/review/tasks/999999/claim", None, "review", 404),
    ("POST", "/api/v1/review/tasks/999999/decide", {"action": "confirm"}, "review", 404),
    ("POST", "/api/v1/review/cases/NO-SUCH-CASE/merge", {"into": "{normal}"}, "review", 404),
    ("POST", "/api/v1/review/cases/NO-SUCH-CASE/split", {"parts": [{"text": "甲事项"}, {"text": "乙事项"}]}, "review", 404),
    ("POST", "/api/v1/review/cases/NO-SUCH-CASE/unmerge", {"reason_code": "not_duplicate"}, "unmerge", 404),
    ("GET", "/api/v1/review/stats", None, "review_stats", 200),
    ("GET", "/api/v1/models", None, "model_read", 200),
    ("POST", "/api/v1/models/no-such-model/activate", None, "model_admin", 404),
    ("GET", "/api/v1/audit", None, "audit_read", 200),
    ("GET", "/api/v1/audit/verify", None, "audit_read", 200),
]


def _call(env: dict[str, Any], method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    ids = {"normal": env["normal"]["id"]}
    path = path.format(**ids)
    if isinstance(body, dict) and "into" in body:
        body = {**body, "into": body["into"].format(**ids)}
    return env["client"].request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "permission", "ok_status"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_role_endpoint_status(env: dict[str, Any], role: str, method: str, path: str, body: Any, permission: str,
                              ok_status: int) -> None:
    r = _call(env, method, path, body, auth(env["keys"][role]))
    expected = ok_status if role in POLICY[permission] else 403
    assert r.status_code == expected, r.text
    if expected >= 400:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == {403: "T403", 404: "T404"}[expected]


@pytest.mark.parametrize(("method", "path", "body", "permission", "ok_status"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "trk_00000000_" + "A" * 43}, {"Authorization": "Bearer nonsense"}],
                         ids=["missing", "unknown", "malformed"])
def test_every_endpoint_needs_a_valid_key(env: dict[str, Any], method: str, path: str, body: Any, permission: str,
                                         ok_status: int, headers: dict[str, str]) -> None:
    r = _call(env, method, path, body, headers)
    assert r.status_code == 401
    assert r.json()["code"] == "T401"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_bearer_header_is_accepted(env: dict[str, Any]) -> None:
    r = env["client"].get("/api/v1/review/queue", headers={"Authorization": f"Bearer {env['keys']['reviewer']}"})
    assert r.status_code == 200


def test_revoked_key_is_refused(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker remembers a verified key for TRIAGE_AUTH_CACHE_SECONDS: a revocation takes effect within that time."""
    import serving.auth

    store = env["store"]
    record, key = store.create_api_key("short-lived", "reviewer")
    assert env["client"].get("/api/v1/review/queue", headers=auth(key)).status_code == 200
    assert store.revoke_api_key(record.id)
    assert env["client"].get("/api/v1/review/queue", headers=auth(key)).status_code == 200  # still remembered
    ttl = ServiceSettings.model_fields["auth_cache_seconds"].default
    now = serving.auth._now()
    monkeypatch.setattr(serving.auth, "_now", lambda: now + ttl + 0.01)
    r = env["client"].get("/api/v1/review/queue", headers=auth(key))
    assert r.status_code == 401 and r.json()["code"] == "T401"


def test_key_cache_off_refuses_a_revoked_key_at_once(env: dict[str, Any]) -> None:
    from serving.auth import store_key_verifier

    store = env["store"]
    verify = store_key_verifier(store, cache_seconds=0)
    record, key = store.create_api_key("no-cache", "reviewer")
    assert verify(key) is not None
    assert store.revoke_api_key(record.id)
    assert verify(key) is None


@pytest.mark.parametrize(("role", "status"), [("clerk", 404), ("clerk2", 404), ("reviewer", 404), ("supervisor", 200),
                                              ("admin", 403), ("auditor", 403)])
def test_confidential_case_exists_only_for_supervisor(env: dict[str, Any], role: str, status: int) -> None:
    cid = env["confidential"]["id"]
    r = env["client"].get(f"/api/v1/cases/{cid}", headers=auth(env["keys"][role]))
    assert r.status_code == status
    if status == 404:
        # Indistinguishable from a case that does not exist.
        missing = env["client"].get("/api/v1/cases/CQ-NOPE-0", headers=auth(env["keys"][role]))
        assert r.json()["code"] == missing.json()["code"] == "T404"
        assert r.json()["title"] == missing.json()["title"]


@pytest.mark.parametrize(("role", "visible"), [
    ("clerk", {"normal"}), ("clerk2", {"other"}), ("reviewer", {"normal", "other"}),
    ("supervisor", {"normal", "other", "confidential"}),
])
def test_case_list_is_scoped_by_role(env: dict[str, Any], role: str, visible: set[str]) -> None:
    r = env["client"].get("/api/v1/cases", headers=auth(env["keys"][role]), params={"page_size": 100})
    assert r.status_code == 200
    ids = {c["id"] for c in r.json()["data"]}
    expected = {env[name]["id"] for name in visible}
    hidden = {env[name]["id"] for name in ("normal", "other", "confidential")} - expected
    assert expected <= ids
    assert not hidden & ids


def test_clerk_cannot_read_another_clerks_case(env: dict[str, Any]) -> None:
    r = env["client"].get(f"/api/v1/cases/{env['other']['id']}", headers=auth(env["keys"]["clerk"]))
    assert r.status_code == 404


@pytest.mark.parametrize(("role", "sees_confidential"), [("reviewer", False), ("supervisor", True)])
def test_review_queue_hides_confidential_tasks(env: dict[str, Any], role: str, sees_confidential: bool) -> None:
    r = env["client"].get("/api/v1/review/queue", headers=auth(env["keys"][role]), params={"page_size": 200})
    case_ids = {item["case_id"] for item in r.json()["data"]}
    assert env["normal"]["id"] in case_ids
    assert (env["confidential"]["id"] in case_ids) is sees_confidential
    task = env["confidential"]["review_task_id"]
    claim = env["client"].post(f"/api/v1/review/tasks/{task}/claim", headers=auth(env["keys"]["reviewer"]))
    assert claim.status_code == 404  # a reviewer cannot touch it either


# Expected petitioner fields and text by role: raw (R) or masked (M).
MASKING = {
    "clerk": {"name": "R", "id_number": "M", "phone": "M"},
    "reviewer": {"name": "R", "id_number": "M", "phone": "M"},
    "supervisor": {"name": "R", "id_number": "R", "phone": "R"},
}
RAW = {"name": NAME, "id_number": FAKE_ID, "phone": FAKE_PHONE}
MASKED = {"name": "王**", "id_number": FAKE_ID[:3] + "*" * 11 + FAKE_ID[-4:], "phone": FAKE_PHONE[:3] + "****" + FAKE_PHONE[-4:]}


@pytest.mark.parametrize("role", list(MASKING))
def test_case_personal_data_masked_by_role(env: dict[str, Any], role: str) -> None:
    r = env["client"].get(f"/api/v1/cases/{env['normal']['id']}", headers=auth(env["keys"][role]))
    assert r.status_code == 200
    body = r.json()
    for field, mode in MASKING[role].items():
        assert body["petitioner"][field] == (RAW if mode == "R" else MASKED)[field], field
        in_text = RAW[field] in body["text"]
        if field != "name":
            assert in_text is (mode == "R"), field
            entity_texts = [e["text"] for e in body["entities"]["items"] if e["type"] == field]
            assert entity_texts == [(RAW if mode == "R" else MASKED)[field]], field
    if MASKING[role]["id_number"] == "M":
        assert FAKE_ID not in r.text and FAKE_PHONE not in r.text


@pytest.mark.parametrize("role", ["clerk", "reviewer"])
def test_case_list_masks_identifiers(env: dict[str, Any], role: str) -> None:
    r = env["client"].get("/api/v1/cases", headers=auth(env["keys"][role]))
    assert r.status_code == 200 and r.json()["count"] >= 1
    assert FAKE_ID not in r.text and FAKE_PHONE not in r.text
    assert MASKED["phone"] in r.text


def test_triage_response_masks_identifiers_for_clerk(env: dict[str, Any]) -> None:
    body = env["normal"]
    phones = [e["text"] for e in body["entities"]["items"] if e["type"] == "phone"]
    assert phones == [MASKED["phone"]]
    assert FAKE_ID not in str(body) and FAKE_PHONE not in str(body)


def test_links_to_confidential_cases_are_hidden(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A link to a confidential case is shown to the supervisor only (the linker's quality is not tested here)."""
    from triage.schemas import DuplicateLink

    client, keys, pipeline = env["client"], env["keys"], env["app"].state.pipeline
    cid, nid = env["confidential"]["id"], env["normal"]["id"]

    class FixedLinker:
        version = pipeline.linker.version
        featurizer = pipeline.linker.featurizer

        def link(self, petition: Any, text: str, entities: Any) -> list[DuplicateLink]:
            return [DuplicateLink(case_id=cid, probability=0.97, reasons=["同一信访人"], same_petitioner=True),
                    DuplicateLink(case_id=nid, probability=0.9, reasons=["相似度0.90"])]

    monkeypatch.setattr(pipeline, "linker", FixedLinker())
    body = {"text": CONFIDENTIAL_TEXT.replace("。请纪委", "，至今未解决。请纪委"), "petitioner": {"phone": INFORMANT_PHONE}}
    as_clerk = client.post("/api/v1/petitions/triage?dry_run=true", json=body, headers=auth(keys["clerk"]))
    as_supervisor = client.post("/api/v1/petitions/triage?dry_run=true", json=body, headers=auth(keys["supervisor"]))
    assert [lk["case_id"] for lk in as_supervisor.json()["links"]] == [cid, nid]
    assert [lk["case_id"] for lk in as_clerk.json()["links"]] == [nid]
    assert cid not in as_clerk.text
