"""The real server process, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.factories import FAKE_ID, FAKE_PHONE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_server_healthz_and_logs_are_json_without_personal_data(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    created = subprocess.run([sys.executable, "-m", "triage_cli.main", "keys", "create", "--name", "e2e", "--role", "clerk",
                              "--json"], cwd=ROOT, capture_output=True, text=True, check=True,
                             env={**os.environ, "TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'triage.db'}"})
    key = {"X-API-Key": json.loads(created.stdout)["key"]}
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.base_url + "/readyz")
    assert ready.status_code in (200, 503)
    assert ready.json()["stages"]["normalize"] == "builtin"
    text = f"我叫王小明，身份证{FAKE_ID}，电话{FAKE_PHONE}，小区物业停水三天"
    r = httpx.post(server.base_url + "/api/v1/petitions/triage",
                   json={"text": text, "petitioner": {"name": "王小明", "id_number": FAKE_ID, "phone": FAKE_PHONE}}, headers=key)
    assert r.status_code in (201, 503)
    bad = httpx.post(server.base_url + "/api/v1/petitions/triage",
                     json={"text": text, "petitioner": {"id_number": FAKE_ID[:-1] + "Y"}}, headers=key)
    assert bad.status_code == 422
    server.stop()
    log = server.log_text()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines, "the server wrote no log lines"
    for line in lines:
        json.loads(line)  # every line is one JSON object
    for secret in (FAKE_ID, FAKE_PHONE, "王小明", "停水三天"):
        assert secret not in log
