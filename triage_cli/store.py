"""Case-store commands: `triage db upgrade|current`, `triage audit verify`, `triage ingest`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from triage.errors import TriageError

db_app = typer.Typer(help="案件库结构 (database schema migrations)", no_args_is_help=True)
audit_app = typer.Typer(help="审计记录 (the append-only audit trail)", no_args_is_help=True)

URL_HELP = "SQLAlchemy URL (default TRIAGE_DATABASE_URL or sqlite:///var/triage.db)"


def _settings():  # type: ignore[no-untyped-def]  # ServiceSettings, imported lazily
    from serving.settings import ServiceSettings

    return ServiceSettings()


def open_store(url: str | None, *, auto_upgrade: bool | None = None):  # type: ignore[no-untyped-def]
    """A CaseStore for the CLI: URL and secret from the settings unless given."""
    from triage.store import open_store as _open

    settings = _settings()
    store = _open(url or settings.database_url, db_auto_upgrade=settings.db_auto_upgrade,
                  pii_key=settings.pii_key.get_secret_value() if settings.pii_key else None,
                  pii_key_file=str(settings.pii_key_file))
    if auto_upgrade is not None:
        store.auto_upgrade = auto_upgrade
    return store


def _configure_logging() -> None:
    from serving.logs import configure_logging

    configure_logging("WARNING", json_lines=False)


@db_app.command("upgrade")
def db_upgrade(
    url: str = typer.Option(None, "--url", "--db", help=URL_HELP),
    revision: str = typer.Option("head", help="Target revision"),
) -> None:
    """Create or upgrade the database schema (Alembic migrations shipped in the package)."""
    from triage.store import make_engine, upgrade
    from triage.store.engine import safe_url

    engine = make_engine(url or _settings().database_url)
    after = upgrade(engine, revision)
    typer.echo(f"{safe_url(str(engine.url))}: at revision {after}")


@db_app.command("current")
def db_current(url: str = typer.Option(None, "--url", "--db", help=URL_HELP)) -> None:
    """Print the database's schema revision and the newest one shipped (exit 1 when behind)."""
    from triage.store import current_revision, head_revision, make_engine

    engine = make_engine(url or _settings().database_url)
    current, head = current_revision(engine), head_revision()
    typer.echo(f"current {current or '(empty)'}, head {head}")
    if current != head:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(url: str = typer.Option(None, "--db", "--url", help=URL_HELP)) -> None:
    """Recompute the audit hash chain: exit 0 when intact, 1 with the first broken seq."""
    store = open_store(url, auto_upgrade=False)
    try:
        result = store.verify_audit()
    except TriageError as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    if result.ok:
        typer.echo(f"audit chain intact: {result.checked} events")
        return
    typer.echo(f"audit chain BROKEN at seq {result.first_broken_seq} ({result.problem}); "
               f"{result.checked} events before it verified", err=True)
    raise typer.Exit(1)


def ingest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSONL petition records"),
    url: str = typer.Option(None, "--db", "--url", help=URL_HELP),
    ner: bool = typer.Option(True, "--ner/--no-ner", help="Run the word/NER tagger (TRIAGE_NER_ENGINE fast|lac)"),
    features: bool = typer.Option(True, "--features/--no-features", help="Compute link features (bands, vectors)"),
    batch_size: int = typer.Option(200, min=1, max=10_000, help="Records per transaction"),
) -> None:
    """Register petition records as existing cases (idempotent by id); exit 1 when some lines are bad."""
    from tqdm import tqdm

    from triage.entities import EntityExtractor
    from triage.store.ingest import ingest_file
    from triage.taxonomy import load_taxonomy

    _configure_logging()
    settings = _settings()
    store = open_store(url)
    try:
        store.ensure_ready()
    except TriageError as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    tagger = None
    if ner:
        from serving.ner import word_tagger

        tagger = word_tagger(settings.ner_engine, intra_op_threads=settings.onnx_threads)
    extractor = EntityExtractor(load_taxonomy(settings.data_dir).gazetteer, tagger)
    featurizer = _featurizer() if features else None
    with file.open("rb") as fh:
        total = sum(1 for _ in fh)
    with tqdm(total=total, unit="行", desc="ingest", file=None, disable=None) as bar:
        report = ingest_file(file, store, extractor=extractor, featurizer=featurizer, batch_size=batch_size,
                             progress=bar.update)
    for line, reason in report.bad:
        typer.echo(f"第 {line} 行：{reason}", err=True)
    for line, case_id in report.conflicts:
        typer.echo(f"第 {line} 行：案件 {case_id} 已以不同内容登记，未覆盖", err=True)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


def _featurizer():  # type: ignore[no-untyped-def]
    """The linker's featurizer: MinHash bands plus its encoder when the model has one."""
    try:
        from triage.linking.features import LinkFeaturizer, load_default_featurizer
    except ImportError:
        logging.getLogger(__name__).warning("triage.linking.features not available: cases get no link features")
        return None
    try:
        return load_default_featurizer()
    except TriageError:
        logging.getLogger(__name__).warning("no linker encoder found: storing band hashes only (no vectors)")
        return LinkFeaturizer(None)


def register(app: typer.Typer) -> None:
    """Mount `db`, `audit` and `ingest` on the `triage` app."""
    app.add_typer(db_app, name="db")
    app.add_typer(audit_app, name="audit")
    app.command("ingest")(ingest)
