"""The review workflow: queue, claim, confirm/override, merge, split, override statistics."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from serving.auth import Principal, require
from serving.deps import PipelineDep, StoreDep
from serving.idempotency import run_idempotent
from serving.metrics import REVIEW_ACTIONS
from serving.routes.cases import CaseId
from serving.views import ReviewTaskView
from triage import review
from triage.review import Change, QueueFilter, QueueItem, SplitPart

router = APIRouter(prefix="/api/v1/review", tags=["review"])

TaskId = Annotated[int, Path(ge=1, le=2**62, description="审核任务编号")]
Reviewer = Annotated[Principal, Depends(require("review"))]
_WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "T401"}, 403: {"description": "T403"}, 404: {"description": "任务或案件不存在或不可见（T404）"},
    409: {"description": "已被他人领取、已完成或已被修改（T409）"}, 422: {"description": "T100/T120/T121/T130"},
    429: {"description": "T429"},
}


class QueuePage(BaseModel):
    data: list[QueueItem]
    count: int
    page: int
    page_size: int


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["confirm", "override"]
    track: str | None = Field(None, max_length=32)
    department: str | None = Field(None, max_length=32)
    request_type: str | None = Field(None, max_length=32)
    status: Literal["auto", "not_accepted"] | None = Field(None, description="auto = 按决定分办；not_accepted = 不予受理")
    reason_code: str | None = Field(None, max_length=64, description="改判原因代码：" + "、".join(review.OVERRIDE_REASONS))
    comment: str | None = Field(None, max_length=review.MAX_COMMENT)
    expected_version: int | None = Field(None, ge=1, le=2**31, description="读取时的案件版本（乐观锁）")


class DecideResponse(BaseModel):
    case_id: str
    case_version: int
    task_id: int
    action: str
    decision: dict[str, Any]
    audit_seq: int


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", description="并入的（较早）案件编号")
    reason_code: str | None = Field(None, max_length=64)
    comment: str | None = Field(None, max_length=review.MAX_COMMENT)
    expected_version: int | None = Field(None, ge=1, le=2**31)


class MergeResponse(BaseModel):
    case_id: str
    merged_into: str
    case_version: int
    closed_tasks: list[int]
    audit_seq: int


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason_code: str = Field(max_length=64, description="撤销并案原因代码（必填），如 not_duplicate、new_facts、other")
    comment: str | None = Field(None, max_length=review.MAX_COMMENT)
    expected_version: int | None = Field(None, ge=1, le=2**31, description="读取时的案件版本（乐观锁）")


class UnmergeResponse(BaseModel):
    case_id: str
    unmerged_from: str | None
    case_version: int
    decision: dict[str, Any]
    task_id: int | None = Field(description="重新打开的审核任务（恢复为待审核时）")
    audit_seq: int
    unchanged: bool = Field(description="true：该案件的并案此前已被撤销，未做任何修改")


class SplitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[SplitPart] = Field(min_length=2, max_length=10)
    comment: str | None = Field(None, max_length=review.MAX_COMMENT)


class SplitChild(BaseModel):
    case_id: str
    task_id: int
    track: str
    department: str


class SplitResponse(BaseModel):
    case_id: str
    children: list[SplitChild]
    audit_seq: int


class RateView(BaseModel):
    decided: int
    overridden: int
    rate: float | None


class OverrideStats(BaseModel):
    decided: int
    overridden: int
    rate: float | None
    per_class: dict[str, dict[str, RateView]]
    per_rule: dict[str, RateView]


@router.get("/queue", response_model=QueuePage)
async def review_queue(
    store: StoreDep,
    principal: Reviewer,
    state: Annotated[list[Literal["open", "claimed", "done"]] | None, Query(description="默认 open 与 claimed")] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    priority: Annotated[str | None, Query(pattern=r"^P[0-2]$")] = None,
    track: Annotated[str | None, Query(max_length=32)] = None,
    department: Annotated[str | None, Query(max_length=32)] = None,
    district: Annotated[str | None, Query(max_length=32)] = None,
    due_before: Annotated[date | None, Query(description="期限在此日期或之前")] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1, description="模型对法定途径的最高概率下限")] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    mine: Annotated[bool, Query(description="只看自己领取的任务")] = False,
    sort: Annotated[Literal["deadline", "priority", "created", "confidence"], Query()] = "deadline",
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> QueuePage:
    """Review tasks with their cases, filtered and sorted (confidential cases for supervisors only)."""
    f = QueueFilter(states=tuple(state or ("open", "claimed")), status=status, priority=priority, track=track,
                    department=department, district=district, due_before=due_before, min_confidence=min_confidence,
                    max_confidence=max_confidence, claimed_by=principal.actor if mine else None)
    items, total = await run_in_threadpool(
        review.review_queue, store, f, can_see_confidential=principal.sees_confidential, sort=sort,
        descending=order == "desc", page=page, page_size=page_size)
    return QueuePage(data=items, count=total, page=page, page_size=page_size)


def _write(request: Request, principal: Principal, body: Any, action: str, fn: Any) -> JSONResponse:
    def execute() -> tuple[int, Any]:
        result = fn()
        REVIEW_ACTIONS.labels(action=action).inc()
        return 200, result

    return run_idempotent(request, principal, body, execute)


@router.post("/tasks/{task_id}/claim", response_model=ReviewTaskView, responses=_WRITE_PROBLEMS)
async def claim_task(request: Request, task_id: TaskId, store: StoreDep, principal: Reviewer) -> JSONResponse:
    """Claim an open review task (one reviewer per task)."""

    def fn() -> Any:
        task = review.claim(store, task_id, actor=principal.actor, role=principal.role,
                            can_see_confidential=principal.sees_confidential)
        return ReviewTaskView.model_validate(task).model_dump(mode="json")

    return await run_in_threadpool(_write, request, principal, {"task_id": task_id}, "claim", fn)


@router.post("/tasks/{task_id}/decide", response_model=DecideResponse, responses=_WRITE_PROBLEMS)
async def decide_task(request: Request, task_id: TaskId, body: DecideRequest, store: StoreDep, pipeline: PipelineDep,
                      principal: Reviewer) -> JSONResponse:
    """Confirm the suggested decision, or override track/department/request type/status with a reason code."""
    change = Change(track=body.track, department=body.department, request_type=body.request_type, status=body.status)

    def fn() -> Any:
        out = review.decide(store, pipeline.taxonomy, task_id, actor=principal.actor, role=principal.role,
                            can_see_confidential=principal.sees_confidential, action=body.action, change=change,
                            reason_code=body.reason_code, comment=body.comment, expected_version=body.expected_version,
                            may_take_over=principal.role == "supervisor")
        return DecideResponse.model_validate(out).model_dump(mode="json")

    return await run_in_threadpool(_write, request, principal, body.model_dump(mode="json"), body.action, fn)


@router.post("/cases/{case_id}/merge", response_model=MergeResponse, responses=_WRITE_PROBLEMS)
async def merge_case(request: Request, case_id: CaseId, body: MergeRequest, store: StoreDep,
                     principal: Reviewer) -> JSONResponse:
    """Merge this case into an earlier case about the same matter (并案); its open tasks are closed."""

    def fn() -> Any:
        out = review.merge(store, case_id, body.into, actor=principal.actor, role=principal.role,
                           can_see_confidential=principal.sees_confidential, reason_code=body.reason_code,
                           comment=body.comment, expected_version=body.expected_version)
        return MergeResponse.model_validate(out).model_dump(mode="json")

    return await run_in_threadpool(_write, request, principal, body.model_dump(mode="json"), "merge", fn)


@router.post("/cases/{case_id}/unmerge", response_model=UnmergeResponse, responses=_WRITE_PROBLEMS)
async def unmerge_case(request: Request, case_id: CaseId, body: UnmergeRequest, store: StoreDep,
                       principal: Annotated[Principal, Depends(require("unmerge"))]) -> JSONResponse:
    """Undo a confirmed merge (撤销并案): restore the decision before the merge and re-open review when due."""

    def fn() -> Any:
        out = review.unmerge(store, case_id, actor=principal.actor, role=principal.role,
                             can_see_confidential=principal.sees_confidential, reason_code=body.reason_code,
                             comment=body.comment, expected_version=body.expected_version)
        return UnmergeResponse.model_validate(out).model_dump(mode="json")

    return await run_in_threadpool(_write, request, principal, body.model_dump(mode="json"), "unmerge", fn)


@router.post("/cases/{case_id}/split", response_model=SplitResponse, responses=_WRITE_PROBLEMS)
async def split_case(request: Request, case_id: CaseId, body: SplitRequest, store: StoreDep, pipeline: PipelineDep,
                     principal: Reviewer) -> JSONResponse:
    """Split a petition with several matters into new cases, each queued for review (with entities, and indexed
    for duplicate linking like any triaged case)."""

    def fn() -> Any:
        out = review.split(store, pipeline.taxonomy, case_id, body.parts, actor=principal.actor, role=principal.role,
                           can_see_confidential=principal.sees_confidential, comment=body.comment,
                           extractor=pipeline.extractor, featurizer=getattr(pipeline.linker, "featurizer", None))
        return SplitResponse.model_validate(out).model_dump(mode="json")

    return await run_in_threadpool(_write, request, principal, body.model_dump(mode="json"), "split", fn)


@router.get("/stats", response_model=OverrideStats)
async def override_stats(
    store: StoreDep,
    principal: Annotated[Principal, Depends(require("review_stats"))],
    since: Annotated[datetime | None, Query(description="只统计此时间之后的审核决定（带时区）")] = None,
) -> OverrideStats:
    """Override rate of review decisions per suggested class and per rule that fired."""
    from serving.routes.cases import _aware

    out = await run_in_threadpool(review.override_stats, store, since=_aware(since))
    return OverrideStats.model_validate(out)
