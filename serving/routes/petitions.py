"""Triage one petition: suggestions only (?dry_run=true) or registered, decided and queued."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving.auth import Principal, require
from serving.deps import PipelineDep
from serving.idempotency import derived_case_id, idempotency_key, run_idempotent
from serving.metrics import PETITIONS, record_stages
from serving.routes.cases import hidden_case_ids
from serving.schemas import TriageRequest
from serving.views import TriageResponse, masked_entities
from triage.pipeline import TriagePipeline
from triage.schemas import Decision, DuplicateLink, Entities, Petition, Suggestion, TriageResult
from triage.store import CaseStore, gen_case_id

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/petitions", tags=["petitions"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "缺少或无效的 API 密钥（T401）"},
    403: {"description": "角色无权登记信访件（T403）"},
    409: {"description": "同一编号已以不同内容登记（T409）"},
    413: {"description": "请求体过大（T413）"},
    422: {"description": "校验失败（T100）或 Idempotency-Key 冲突（T120/T121）"},
    429: {"description": "请求过于频繁（T429）"},
    503: {"description": "处理环节未就绪（T400）"},
}


def _features(pipeline: TriagePipeline, text: str, computed: Any = None) -> tuple[Any, str | None]:
    """The linker's features of the text (stored with the case so later petitions can link to it): the ones
    the link stage computed, else computed here (a linker that does not hand them out)."""
    linker = pipeline.linker
    featurizer = getattr(linker, "featurizer", None)
    if computed is not None or featurizer is None:
        return computed, getattr(linker, "version", None)
    return featurizer.features(text), getattr(linker, "version", None)


def _response(result: TriageResult, principal: Principal, hidden: set[str], **extra: Any) -> dict[str, Any]:
    body = TriageResponse(
        id=result.petition_id,
        suggestions=result.suggestions,
        entities=masked_entities(result.entities, principal.role),
        links=[lk for lk in result.links if lk.case_id not in hidden],
        decision=result.decision,
        model_versions=result.decision.model_versions,
        stages_ms={k: round(v, 3) for k, v in result.stages_ms.items()},
        **extra,
    )
    return body.model_dump(mode="json")


def _stored_result(store: CaseStore, case_id: str) -> TriageResult | None:
    """The stored triage of a case (for a repeated registration of the same record)."""
    rec = store.get_case(case_id, detail=True)
    if rec is None or not rec.decisions:
        return None
    latest_version: dict[str, str] = {}
    for sug in rec.suggestions:
        latest_version[sug.field] = sug.model_version
    return TriageResult(
        petition_id=rec.id, normalized_text=rec.text,
        entities=Entities.model_validate(rec.entities) if rec.entities else Entities(),
        suggestions={s.field: Suggestion(field=s.field, labels=s.labels, model_version=s.model_version)  # type: ignore[arg-type]
                     for s in rec.suggestions if latest_version[s.field] == s.model_version},
        links=[DuplicateLink(case_id=lk.linked_case_id, probability=lk.probability, reasons=lk.reasons,
                             same_petitioner=lk.same_petitioner) for lk in rec.links],
        decision=Decision.model_validate(rec.decisions[-1].decision),
    )


def _count(result: TriageResult, mode: str) -> None:
    PETITIONS.labels(mode=mode, status=result.decision.status, track=result.decision.track).inc()
    record_stages(result.stages_ms)


def triage_and_store(request: Request, pipeline: TriagePipeline, store: CaseStore, principal: Principal,
                     body: TriageRequest) -> JSONResponse:
    key = idempotency_key(request)
    raw = body.model_dump(mode="json", exclude_none=True)

    def execute() -> tuple[int, dict[str, Any]]:
        petition = Petition.model_validate(body.model_dump())
        if petition.id is None:
            case_id = derived_case_id(store.pii_secret, principal, key) if key else gen_case_id()
            petition = petition.model_copy(update={"id": case_id})
        result, computed = pipeline.triage_with_features(petition)
        features, linker_version = _features(pipeline, result.normalized_text, computed)
        outcome = store.save_triage(petition, result, actor=principal.actor, role=principal.role, features=features,
                                    linker_version=linker_version)
        if outcome.outcome == "unchanged":
            result = _stored_result(store, outcome.case_id) or result
        _count(result, "persisted" if outcome.outcome != "unchanged" else "unchanged")
        hidden = hidden_case_ids(store, principal, [lk.case_id for lk in result.links])
        payload = _response(result, principal, hidden, persisted=True, outcome=outcome.outcome,
                            review_task_id=outcome.review_task_id)
        return (201 if outcome.outcome == "inserted" else 200), payload

    return run_idempotent(request, principal, raw, execute, key=key)


@router.post(
    "/triage",
    response_model=TriageResponse,
    responses={201: {"model": TriageResponse, "description": "新登记的案件"}, **_PROBLEMS},
)
async def triage_petition(
    request: Request,
    body: TriageRequest,
    pipeline: PipelineDep,
    principal: Annotated[Principal, Depends(require("triage"))],
    dry_run: Annotated[bool, Query(description="只给出建议，不登记、不入审核队列")] = False,
) -> JSONResponse:
    """Suggest track, department, request type, flags, entities and duplicate links; register the case unless dry_run."""
    store: CaseStore = request.app.state.store
    if dry_run:
        petition = Petition.model_validate(body.model_dump())
        result = await run_in_threadpool(pipeline.triage, petition)
        _count(result, "dry_run")
        hidden = await run_in_threadpool(hidden_case_ids, store, principal, [lk.case_id for lk in result.links])
        return JSONResponse(_response(result, principal, hidden, persisted=False))
    return await run_in_threadpool(triage_and_store, request, pipeline, store, principal, body)
