"""Shared fixtures. One conftest for the whole suite (house style)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def taxonomy():  # type: ignore[no-untyped-def]
    from triage.taxonomy import load_taxonomy

    return load_taxonomy()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A real `triage serve` process on a free loopback port, with its log captured."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "triage_cli.main", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_alive(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not alive after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        {"TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'triage.db'}", "TRIAGE_LOG_LEVEL": "INFO"},
        tmp_path / "server.log",
    )
    try:
        srv.wait_alive()
        yield srv
    finally:
        srv.stop()


# --- databases for the case store (tests/store, and anyone who needs a real database) ----------

PG_ADMIN_URL = os.environ.get("TRIAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this test, dropped afterwards.

    Fails (never skips) when the server is unreachable: `make test` guarantees it
    (scripts/ensure_postgres.sh); TRIAGE_TEST_PG_URL points at another admin connection.
    """
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"triage_t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {admin.url.render_as_string(hide_password=True)}: "
                    f"run scripts/ensure_postgres.sh or set TRIAGE_TEST_PG_URL ({type(exc).__name__})")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))
