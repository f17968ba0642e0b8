"""Helpers for the API tests: a deterministic decider, an in-process app, keys per role.

The decider stands in for the rule engine so these tests pin down the API (auth, masking,
persistence, review workflow), not the rules: a petition whose text contains 保密 becomes a
confidential discipline case; every petition goes to review unless its text contains 【自动】.
Everything else is real: the entity extractor (patterns + gazetteer), the ONNX classifier of
models/default, the linker over the SQL case index, the case store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from triage.pipeline import DecisionContext
from triage.schemas import Decision, Reason

ROLES = ("clerk", "reviewer", "supervisor", "admin", "auditor")


class MarkerDecider:
    version = "test-decider-1"

    def decide(self, ctx: DecisionContext) -> Decision:
        # Discipline makes a case confidential in the store: only the 保密 marker may do that here.
        track = next(ls.label for ls in ctx.suggestions["track"].labels if ls.label != "discipline")
        department = ctx.suggestions["department"].top.label
        flags: list[str] = []
        if "保密" in ctx.text:
            track, flags = "discipline", ["confidential"]
        status = "auto" if "【自动】" in ctx.text else "needs_review"
        return Decision(track=track, department=department, flags=flags, status=status, priority="P2",
                        reasons=[Reason(rule_id="T01_test", message="测试规则")], rules_fired=["T01_test"],
                        model_versions=dict(ctx.model_versions), rules_version="test-rules-1")


def wire_test_pipeline(app: Any) -> None:
    """Give the app's pipeline the real linker over its store and the deterministic decider."""
    from triage.linking.linker import load_linker
    from triage.store.index import SqlCaseIndex

    store = app.state.store
    pipeline = app.state.pipeline
    pipeline.linker = load_linker(SqlCaseIndex(store), secret=store.pii_secret)
    pipeline.decider = MarkerDecider()


def create_keys(store: Any, prefix: str = "") -> dict[str, str]:
    """One API key per role: role → plaintext key."""
    return {role: store.create_api_key(f"{prefix}{role}-officer", role)[1] for role in ROLES}


@contextmanager
def running_app(db_url: str, tmp: Path, **settings: Any) -> Iterator[tuple[Any, TestClient, dict[str, str]]]:
    """The real app in-process on `db_url` with the deterministic decider, and one key per role."""
    from serving.app import create_app
    from serving.settings import ServiceSettings

    cfg = ServiceSettings(database_url=db_url, ner=False, log_json=False, pii_key_file=tmp / "pii.key",
                          db_auto_upgrade="always", **settings)
    app = create_app(cfg)
    with TestClient(app) as client:
        wire_test_pipeline(app)
        yield app, client, create_keys(app.state.store)


@contextmanager
def app_env(db_url: str, tmp: Path) -> Iterator[dict[str, Any]]:
    """`running_app` as one dict: app, client, keys, store, db_url, tmp (what the review API tests pass around)."""
    with running_app(db_url, tmp) as (app, client, keys):
        yield {"app": app, "client": client, "keys": keys, "store": app.state.store, "db_url": db_url, "tmp": tmp}


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def register(env: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    """POST a petition for triage as the clerk of `env` (keys "client", "keys"); the 201 body."""
    r = env["client"].post("/api/v1/petitions/triage", json={"text": text, **extra}, headers=auth(env["keys"]["clerk"]))
    assert r.status_code == 201, r.text
    return dict(r.json())
