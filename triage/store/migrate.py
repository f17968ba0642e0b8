"""Alembic migrations shipped inside the package, driven programmatically (no alembic.ini).

`upgrade(engine)` brings a database to the head revision; `current_revision(engine)` and
`head_revision()` say where it stands; `ensure_schema()` is what the store calls on first use.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from triage.errors import StageNotReadyError
from triage.store.engine import safe_url

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations (and at `engine`, when given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
        cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest revision id among the packaged migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations packaged"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the database to `revision` (default head); return the revision it is at afterwards."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), revision)
    after = current_revision(engine)
    if before != after:
        logger.info("database %s upgraded %s -> %s", safe_url(str(engine.url)), before, after)
    return after


def ensure_schema(engine: Engine, auto_upgrade: bool) -> None:
    """Make sure the schema is at head: upgrade when allowed, else refuse with a clear message.

    Raises:
        StageNotReadyError: the database is behind and `auto_upgrade` is off.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise StageNotReadyError(
        "store",
        f"数据库结构版本为 {current or '空'}，需要 {head}。请运行 `triage db upgrade --url …` 后重启服务。",
    )


def auto_upgrade_allowed(engine: Engine, mode: str) -> bool:
    """The `db_auto_upgrade` setting for this engine: "sqlite" (only the embedded store), "always", "never"."""
    if mode not in ("sqlite", "always", "never"):
        raise ValueError("db_auto_upgrade must be sqlite, always or never")
    return mode == "always" or (mode == "sqlite" and engine.dialect.name == "sqlite")
