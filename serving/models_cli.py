"""`triage models register DIR [--activate]`: make a model directory a version the service can activate."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from serving.keys_cli import URL_HELP, _store

app = typer.Typer(help="模型版本 (register a model directory; activate it here or with the API)", no_args_is_help=True)


@app.command("register")
def register(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Model directory (manifest.json inside)"),
    activate: bool = typer.Option(False, "--activate", help="Also make it the active version (workers load it within "
                                                            "TRIAGE_MODEL_POLL_SECONDS)"),
    url: str = typer.Option(None, "--db", "--url", help=URL_HELP),
) -> None:
    """Register the directory as a model version (name = manifest version; idempotent) and print it as JSON."""
    from serving.model_watch import register_model_dir
    from triage.errors import TriageError

    store = _store(url)
    try:
        name = register_model_dir(store, model_dir)
        if activate:
            store.activate_model_version(name, actor="cli", role="admin")
    except TriageError as exc:
        typer.echo(f"错误 {exc.code}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"name": name, "path": str(model_dir.resolve()), "active": activate}, ensure_ascii=False))
