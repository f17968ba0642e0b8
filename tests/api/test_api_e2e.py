"""The real `triage serve` process (2 uvicorn workers) over real HTTP, on SQLite and on PostgreSQL.

Keys are created with the real CLI; the full pipeline is the product one (LAC NER, ONNX
classifier, linker over the SQL case index, rule file). After the run the server log is scanned
for every name, number and text fragment the requests carried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.settings import ServiceSettings
from tests.conftest import ROOT, ServerProcess
from tests.factories import FAKE_ID, FAKE_PHONE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "欧阳晓明"
TEXT = (f"我叫{NAME}，身份证号{FAKE_ID}，手机{FAKE_PHONE}。我在沙坪坝区一家科技公司做客服，公司至今还欠我两个月工资共9600元，"
        "人事一直说要等老板签字才能发，请劳动部门帮我催讨工资。")
FRAGMENT = "人事一直说要等老板签字才能发"
CONFIDENTIAL = ("彭水县某村党支部书记去年经手全村修路的征地补偿款，到现在还有20多万元没有发到农户手里，村里账目从来不公开。"
                "请纪委派人调查核实。（举报人要求对身份保密）")
INFORMANT_PHONE = "13912345678"


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "triage_cli.main", *args], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture()
def live(tmp_path: Path, db_url: str) -> Iterator[dict[str, Any]]:
    env = {"TRIAGE_DATABASE_URL": db_url, "TRIAGE_PII_KEY_FILE": str(tmp_path / "pii.key"), "TRIAGE_WORKERS": "2",
           "TRIAGE_LOG_LEVEL": "INFO", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    cli(env, "db", "upgrade", "--url", db_url)
    keys = {role: json.loads(cli(env, "keys", "create", "--name", f"{role}-e2e", "--role", role, "--json"))["key"]
            for role in ("clerk", "reviewer", "supervisor", "admin", "auditor")}
    listed = cli(env, "keys", "list")
    assert all(k.split("_")[1] in listed for k in keys.values()) and "trk_" not in listed
    srv = ServerProcess(env, tmp_path / "server.log")
    try:
        srv.wait_alive(timeout=120)
        yield {"srv": srv, "keys": keys, "env": env, "db_url": db_url}
    finally:
        srv.stop()


def h(key: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": key, **extra}


def test_api_end_to_end_real_server(live: dict[str, Any]) -> None:
    srv, keys = live["srv"], live["keys"]
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        assert c.get("/readyz").json()["ready"] is True
        body = {"text": TEXT, "channel": "online", "submitted_at": "2026-03-01T10:00:00+08:00",
                "petitioner": {"name": NAME, "id_number": FAKE_ID, "phone": FAKE_PHONE}}
        first = c.post("/api/v1/petitions/triage", json=body, headers=h(keys["clerk"], **{"Idempotency-Key": "e2e-1"}))
        assert first.status_code == 201, first.text
        replay = c.post("/api/v1/petitions/triage", json=body, headers=h(keys["clerk"], **{"Idempotency-Key": "e2e-1"}))
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
        case_id = first.json()["id"]
        assert first.json()["decision"]["track"] in {"admin_duty", "arbitration"}
        assert FAKE_ID not in first.text and FAKE_PHONE not in first.text

        as_reviewer = c.get(f"/api/v1/cases/{case_id}", headers=h(keys["reviewer"])).json()
        assert as_reviewer["petitioner"]["phone"] == FAKE_PHONE[:3] + "****" + FAKE_PHONE[-4:]
        assert FAKE_ID not in json.dumps(as_reviewer, ensure_ascii=False)
        as_supervisor = c.get(f"/api/v1/cases/{case_id}", headers=h(keys["supervisor"])).json()
        assert as_supervisor["petitioner"]["id_number"] == FAKE_ID

        secret = c.post("/api/v1/petitions/triage", json={"text": CONFIDENTIAL, "petitioner": {"phone": INFORMANT_PHONE}},
                        headers=h(keys["clerk"]))
        assert secret.status_code == 201 and "confidential" in secret.json()["decision"]["flags"]
        sid = secret.json()["id"]
        assert c.get(f"/api/v1/cases/{sid}", headers=h(keys["reviewer"])).status_code == 404
        assert c.get(f"/api/v1/cases/{sid}", headers=h(keys["supervisor"])).status_code == 200

        # The confidential case always goes to review (R14b): the supervisor claims and confirms it.
        task = secret.json()["review_task_id"]
        assert task is not None
        assert c.post(f"/api/v1/review/tasks/{task}/claim", headers=h(keys["reviewer"])).status_code == 404
        assert c.post(f"/api/v1/review/tasks/{task}/claim", headers=h(keys["supervisor"])).status_code == 200
        done = c.post(f"/api/v1/review/tasks/{task}/decide", json={"action": "confirm"}, headers=h(keys["supervisor"]))
        assert done.status_code == 200, done.text

        queue = c.get("/api/v1/review/queue", headers=h(keys["reviewer"]))
        assert queue.status_code == 200 and sid not in queue.text
        assert c.get("/api/v1/audit/verify", headers=h(keys["auditor"])).json()["ok"] is True
        models = c.get("/api/v1/models", headers=h(keys["admin"])).json()
        assert [m["name"] for m in models["data"] if m["loaded"]] == [models["loaded"]]
        assert c.post("/api/v1/petitions/triage", json=body, headers=h(keys["admin"])).status_code == 403
        assert c.get("/api/v1/cases", headers={"X-API-Key": "trk_deadbeef_" + "x" * 43}).status_code == 401

        # Metrics from both workers, labelled by route template only.
        metrics = c.get("/metrics").text
        assert 'route="/api/v1/cases/{case_id}"' in metrics
        assert 'triage_petitions_total{mode="persisted"' in metrics
        assert case_id not in metrics and FAKE_PHONE not in metrics

    # Revocation through the CLI takes effect in every worker within TRIAGE_AUTH_CACHE_SECONDS (each worker
    # remembers a verified key that long).
    cli(live["env"], "keys", "revoke", keys["reviewer"].split("_")[1])
    time.sleep(ServiceSettings.model_fields["auth_cache_seconds"].default + 0.5)
    for _ in range(4):
        assert httpx.get(srv.base_url + "/api/v1/review/queue", headers=h(keys["reviewer"])).status_code == 401

    srv.stop()
    log = srv.log_text()
    assert "triaged id=" in log  # the log was written and captured
    for secret_value in (FAKE_ID, FAKE_PHONE, NAME, FRAGMENT, INFORMANT_PHONE, "征地补偿款", *keys.values()):
        assert secret_value not in log, "personal data or a key in the server log"
