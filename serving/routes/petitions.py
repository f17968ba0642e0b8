"""Triage suggestions for one petition."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from serving.deps import PipelineDep
from serving.schemas import TriageRequest, TriageResponse
from triage.schemas import Petition

router = APIRouter(prefix="/api/v1/petitions", tags=["petitions"])


@router.post("/triage", response_model=TriageResponse)
async def triage_petition(body: TriageRequest, pipeline: PipelineDep) -> TriageResponse:
    """Suggest track, department, request type, flags, entities and duplicate links."""
    petition = Petition.model_validate(body.model_dump())
    result = await run_in_threadpool(pipeline.triage, petition)
    return TriageResponse(
        id=result.petition_id,
        suggestions=result.suggestions,
        entities=result.entities,
        links=result.links,
        decision=result.decision,
        model_versions=result.decision.model_versions,
        stages_ms=result.stages_ms,
    )
