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
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_config=None,
    )
