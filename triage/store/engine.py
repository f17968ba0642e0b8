"""Engine factory for the case store: SQLite (embedded default, WAL) or PostgreSQL (psycopg 3).

SQLite connections run with WAL, foreign keys on and a busy timeout. pysqlite's own implicit
transaction handling is switched off so the store decides how each transaction begins: reads
with a plain BEGIN, writes with BEGIN IMMEDIATE (the write lock is taken up front, so two
writers queue on the busy timeout instead of failing with "database is locked" half-way).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///var/triage.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option read by the BEGIN hook: `engine.execution_options(sqlite_begin="IMMEDIATE")`.
BEGIN_OPTION = "sqlite_begin"


def normalize_url(url: str) -> str:
    """Map postgresql:// and postgres:// to the psycopg 3 driver; leave everything else alone."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with the password hidden (for logs and messages)."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for the case store.

    Args:
        url: SQLAlchemy URL; default sqlite:///var/triage.db (the parent directory is created).
        **kwargs: passed to sqlalchemy.create_engine (e.g. pool_size).

    Returns:
        An Engine whose SQLite connections use WAL, foreign_keys=ON and a busy timeout.
    """
    url = normalize_url(url or DEFAULT_URL)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses at most the last commits, never corrupts
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def is_sqlite_url(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
