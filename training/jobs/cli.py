"""`triage reclassify`: re-run a model + rule file over stored cases or petition files, report what changed.

Parses options and calls `training.jobs.reclassify.reclassify`. The change report goes to --out;
logs and the progress bar go to stderr; the summary is printed on stdout. Exit codes: 0 ok,
1 error (including another job in --out without --restart), 2 usage error (Click).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import typer

from training.jobs.reclassify import DEFAULT_MODEL, DEFAULT_RULES

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Mount `reclassify` on the `triage` app."""
    app.command("reclassify")(reclassify_cmd)


def reclassify_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Report directory (cases.parquet/csv, transitions.csv/png, "
                                                      "bad_records.csv, summary.json; the checkpoint lives here too)"),
    data: list[Path] = typer.Option([], "--data", "-d", exists=True, dir_okay=False,
                                    help="Input file: .jsonl, .csv or .parquet (repeatable)"),
    db: str = typer.Option(None, "--db", help="Case store URL (sqlite:///var/triage.db, postgresql://…): input, --apply target"),
    model: Path = typer.Option(DEFAULT_MODEL, "--model", "-m", exists=True, file_okay=False, help="Model directory"),
    rules: Path = typer.Option(DEFAULT_RULES, "--rules", exists=True, dir_okay=False, help="Rule file"),
    previous: Path = typer.Option(None, "--previous", exists=True, file_okay=False,
                                  help="Earlier report directory: its new labels are the old ones (files)"),
    engine: str = typer.Option("local", "--engine", help="local (this process / --workers processes) or ray"),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes (local) or actors (ray)"),
    address: str = typer.Option(None, "--address", help="Ray cluster address (ray://… or host:port); default: local Ray"),
    checkpoint_every: int = typer.Option(5000, "--checkpoint-every", min=1, help="Records per checkpoint (shard)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Records per model call"),
    reextract: bool = typer.Option(False, "--reextract", help="Extract entities even when stored ones are current"),
    ner: bool = typer.Option(True, "--ner/--no-ner", help="LAC NER in entity extraction (as the service)"),
    link: bool = typer.Option(False, "--link", help="Link duplicates (not available in batch jobs yet)"),
    apply: bool = typer.Option(False, "--apply", help="Write suggestions and decisions to the store (default: dry run)"),
    restart: bool = typer.Option(False, "--restart", help="Discard another or unfinished job's state in --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr"),
    as_of: datetime = typer.Option(None, "--as-of", formats=["%Y-%m-%dT%H:%M:%S%z"],
                                   help="'Now' for the rules' deadlines (default: job start, kept on resume)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Re-classify cases (--db) or files (--data) and write a change report; --apply writes to the store."""
    from training.jobs.reclassify import ReclassifyRequest, reclassify
    from training.model_cli import _logging
    from triage.errors import TriageError

    _logging(verbose)
    for noisy in ("serving.sessions", "ray", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    req = ReclassifyRequest(
        out_dir=out, data=list(data), db_url=db, model_dir=model, rules_path=rules, previous=previous, engine=engine,
        workers=workers, address=address, checkpoint_every=checkpoint_every, batch_size=batch_size, reextract=reextract,
        ner=ner, link=link, apply=apply, restart=restart, progress=progress, as_of=as_of,
    )
    try:
        summary = reclassify(req)
    except (ValueError, FileNotFoundError, TriageError) as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    for line in summary.lines:
        typer.echo(line)
    if summary.already_complete:
        return
    if summary.applied:
        typer.echo("applied: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.applied.items())))
    typer.echo(f"job {summary.job_id}{' (resumed)' if summary.resumed else ''}: {summary.processed_now} triaged now "
               f"at {summary.rate_per_s:.0f}/s, {summary.elapsed_s:.1f} s in all, peak memory {summary.peak_rss_mb:.0f} MB")
    typer.echo(f"report: {out}/ (cases.parquet, cases.csv, transitions.csv, transitions.png, bad_records.csv, summary.json)")
