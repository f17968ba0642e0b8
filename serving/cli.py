"""`triage serve`: run the API with uvicorn."""

from __future__ import annotations

import typer

app = typer.Typer(help="服务 (the HTTP API)")


@app.command("serve")
def serve(
    host: str = typer.Option(None, help="Interface (default TRIAGE_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default TRIAGE_PORT or 8000)"),
    workers: int = typer.Option(None, help="uvicorn workers (default TRIAGE_WORKERS or 1)"),
) -> None:
    """Run the triage API (and review console) on the embedded defaults."""
    import uvicorn

    from serving.settings import ServiceSettings

    settings = ServiceSettings()
    n_workers = workers or settings.workers
    if n_workers > 1:
        prepare_metrics_dir()  # every worker writes its metrics there; /metrics aggregates them
    from serving.nodelay import NoDelayHTTPProtocol

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        http=NoDelayHTTPProtocol,  # TCP_NODELAY also with several workers (serving/nodelay.py)
        host=host or settings.host,
        port=port or settings.port,
        workers=n_workers,
        log_config=None,
    )


def prepare_metrics_dir() -> str:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty directory before the workers start (they inherit it).

    An existing setting is kept, created when missing and emptied of ``*.db`` files from an earlier
    run (they would be added to this run's counters). Runs before prometheus_client is imported.
    """
    import os
    import tempfile
    from pathlib import Path

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="triage-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in Path(path).glob("*.db"):
        stale.unlink()
    return path
