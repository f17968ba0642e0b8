"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serving.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(request: Request) -> JSONResponse:
    """Which stages and which model version are loaded; 503 until every stage is."""
    pipeline = request.app.state.pipeline
    body = Readiness(
        ready=pipeline.ready,
        stages=pipeline.readiness(),
        taxonomy_version=pipeline.taxonomy.version,
        rules_version=pipeline.taxonomy.rules_version,
        model_dir=request.app.state.model_dir,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
