"""Schemathesis over the OpenAPI schema of the live server: no input may produce a 5xx.

Every operation gets a bounded number of generated requests (FUZZ_EXAMPLES, default 12) with a
key whose role may call it, so the generated data reaches the handlers instead of stopping at 403.
The server runs the product pipeline on SQLite; its log is checked for unhandled errors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.api.support import ROLES
from tests.conftest import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    from triage_cli.store import open_store

    tmp = tmp_path_factory.mktemp("fuzz")
    env = {"TRIAGE_DATABASE_URL": f"sqlite:///{tmp / 'fuzz.db'}", "TRIAGE_PII_KEY_FILE": str(tmp / "pii.key"),
           "TRIAGE_RATE_LIMIT_PER_SECOND": "10000", "TRIAGE_RATE_LIMIT_BURST": "10000", "TRIAGE_NER": "false"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        store = open_store(env["TRIAGE_DATABASE_URL"], auto_upgrade=True)
        keys = {role: store.create_api_key(f"fuzz-{role}", role)[1] for role in ROLES}
        store.engine.dispose()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    srv = ServerProcess(env, tmp / "server.log")
    try:
        srv.wait_alive(timeout=120)
        yield srv, keys
    finally:
        srv.stop()


def _openapi() -> dict:  # type: ignore[type-arg]
    """The app's OpenAPI document (building the app loads nothing: models load in the lifespan)."""
    from fastapi.openapi.utils import get_openapi

    from serving.routes import audit, cases, health, models, petitions, review

    routes = [r for m in (health, petitions, cases, review, models, audit) for r in m.router.routes]
    return get_openapi(title="triage", version="fuzz", routes=routes)


schema = schemathesis.openapi.from_dict(_openapi())


def role_for(path: str) -> str:
    if path.startswith(("/api/v1/audit", "/api/v1/models", "/api/v1/review/stats")):
        return "admin"
    return "supervisor"


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, fuzz_server) -> None:  # type: ignore[no-untyped-def]
    srv, keys = fuzz_server
    response = case.call(base_url=srv.base_url, headers={"X-API-Key": keys[role_for(case.path)]})
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"][0].startswith("application/problem+json"), response.text
        assert response.json()["code"].startswith("T")


def test_fuzz_left_no_unhandled_errors(fuzz_server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = fuzz_server
    log = Path(srv.log_path).read_text(encoding="utf-8", errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log
