"""API behaviour through FastAPI's TestClient (in-process; the real-server test is separate)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServiceSettings
from tests.factories import FAKE_ID


@pytest.fixture()
def client(tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = ServiceSettings(model_dir=tmp_path / "no-model", max_body_bytes=4096, log_json=False,
                               database_url=f"sqlite:///{tmp_path / 'api.db'}", pii_key_file=tmp_path / "pii.key")
    app = create_app(settings)
    with TestClient(app) as c:
        c.headers["X-API-Key"] = app.state.store.create_api_key("test-clerk", "clerk")[1]
        yield c


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_missing_stages(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False
    assert body["stages"]["normalize"] == "builtin"
    from triage.entities import EXTRACTOR_VERSION

    assert body["stages"]["extract"].startswith(EXTRACTOR_VERSION + "+lac")  # LAC is the default engine
    assert body["stages"]["classify"] is None
    assert body["taxonomy_version"] == "2"


def test_triage_without_stages_is_503_problem(client: TestClient) -> None:
    r = client.post("/api/v1/petitions/triage", json={"text": "小区门口烧烤油烟扰民"})
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "T400"
    assert "classify" in body["detail"]


def test_triage_validation_error_names_field_without_value(client: TestClient) -> None:
    bad_id = FAKE_ID[:-1] + ("0" if FAKE_ID[-1] != "0" else "1")
    r = client.post("/api/v1/petitions/triage", json={"text": "有问题", "petitioner": {"id_number": bad_id}})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "T100"
    assert body["errors"] == [
        {"field": "body.petitioner.id_number", "type": "value_error",
         "message": "身份证号格式或校验位不正确（应为18位，最后一位为校验码）"}
    ]
    assert bad_id not in r.text


def test_triage_unknown_field_rejected(client: TestClient) -> None:
    r = client.post("/api/v1/petitions/triage", json={"text": "有问题", "district": "渝中区"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.district"
    assert r.json()["errors"][0]["type"] == "extra_forbidden"


def test_triage_empty_text_rejected(client: TestClient) -> None:
    r = client.post("/api/v1/petitions/triage", json={"text": "   "})
    assert r.status_code == 422
    assert r.json()["errors"][0]["message"] == "text 为空：去除空白和控制字符后没有内容"


def test_body_over_limit_is_413(client: TestClient) -> None:
    r = client.post("/api/v1/petitions/triage", json={"text": "长" * 3000})
    assert r.status_code == 413
    assert r.json()["code"] == "T413"


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
