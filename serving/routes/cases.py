"""Read stored cases: one case with its history, or a filtered page of cases.

Clerks see only the cases registered with a key issued to them (own intake); confidential cases
exist only for the supervisor role (404 for everyone else, never 403). Free-text search is not
offered over GET: a query string ends up in access logs, and a petitioner's name must not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import exists, func, select
from starlette.concurrency import run_in_threadpool

from serving.auth import Principal, require
from serving.deps import StoreDep
from serving.errors import not_found
from serving.views import CaseDetailView, CasePageView, case_view
from triage.store import CaseStore
from triage.store.models import AuditEventRow, Case
from triage.store.records import CaseRecord

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

CaseId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", description="案件编号")]
OWN_ACTIONS = ("triage", "register")


def _own_clause(principal: Principal) -> Any:
    """Cases whose intake audit event was written by a key issued to this clerk."""
    return exists().where(AuditEventRow.case_id == Case.id, AuditEventRow.action.in_(OWN_ACTIONS),
                          AuditEventRow.actor.startswith(f"{principal.name}#", autoescape=True))


def hidden_case_ids(store: CaseStore, principal: Principal, ids: Iterable[str]) -> set[str]:
    """Which of these case ids the caller may not know about (confidential, for other roles)."""
    ids = list(dict.fromkeys(ids))
    if principal.sees_confidential or not ids:
        return set()
    with store.read() as s:
        return set(s.scalars(select(Case.id).where(Case.id.in_(ids), Case.confidential.is_(True))))


def may_see(store: CaseStore, principal: Principal, case_id: str, confidential: bool) -> bool:
    if confidential and not principal.sees_confidential:
        return False
    if principal.role != "clerk":
        return True
    with store.read() as s:
        return bool(s.scalar(select(func.count()).select_from(Case).where(Case.id == case_id, _own_clause(principal))))


def read_case(store: CaseStore, principal: Principal, case_id: str) -> CaseDetailView:
    rec = store.get_case(case_id, detail=True)
    if rec is None or not may_see(store, principal, case_id, rec.confidential):
        raise not_found(f"案件 {case_id} ")
    hidden = hidden_case_ids(store, principal, [lk.linked_case_id for lk in rec.links])
    view = case_view(rec, principal.role, detail=True, hidden_ids=hidden)
    assert isinstance(view, CaseDetailView)
    return view


@router.get("/{case_id}", response_model=CaseDetailView)
async def get_case(case_id: CaseId, store: StoreDep,
                   principal: Annotated[Principal, Depends(require("case_read"))]) -> CaseDetailView:
    """One case with suggestions, decisions, links and review tasks (personal data masked by role)."""
    return await run_in_threadpool(read_case, store, principal, case_id)


def search_cases(store: CaseStore, principal: Principal, filters: dict[str, Any], page: int, page_size: int) -> CasePageView:
    conds: list[Any] = []
    for name in ("status", "track", "department", "district", "priority"):
        if filters.get(name) is not None:
            conds.append(getattr(Case, name) == filters[name])
    if filters.get("submitted_from") is not None:
        conds.append(Case.submitted_at >= filters["submitted_from"])
    if filters.get("submitted_to") is not None:
        conds.append(Case.submitted_at < filters["submitted_to"])
    if not principal.sees_confidential:
        conds.append(Case.confidential.is_(False))
    if principal.role == "clerk":
        conds.append(_own_clause(principal))
    with store.read() as s:
        total = s.scalar(select(func.count()).select_from(Case).where(*conds)) or 0
        rows = s.scalars(select(Case).where(*conds).order_by(Case.submitted_at.desc().nulls_last(), Case.id)
                         .offset((page - 1) * page_size).limit(page_size)).all()
        records = [CaseRecord.model_validate(store._case_record(s, c)) for c in rows]
    return CasePageView(data=[case_view(r, principal.role) for r in records], count=total, page=page, page_size=page_size)


@router.get("", response_model=CasePageView)
async def list_cases(
    store: StoreDep,
    principal: Annotated[Principal, Depends(require("case_read"))],
    status: Annotated[str | None, Query(max_length=32, description="auto | needs_review | not_accepted | merged")] = None,
    track: Annotated[str | None, Query(max_length=32)] = None,
    department: Annotated[str | None, Query(max_length=32)] = None,
    district: Annotated[str | None, Query(max_length=32)] = None,
    priority: Annotated[str | None, Query(pattern=r"^P[0-2]$")] = None,
    submitted_from: Annotated[datetime | None, Query(description="inclusive, with time zone")] = None,
    submitted_to: Annotated[datetime | None, Query(description="exclusive, with time zone")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CasePageView:
    """Cases matching the filters, newest first (clerks: own intake only)."""
    filters = {"status": status, "track": track, "department": department, "district": district, "priority": priority,
               "submitted_from": _aware(submitted_from), "submitted_to": _aware(submitted_to)}
    return await run_in_threadpool(search_cases, store, principal, filters, page, page_size)


def _aware(value: datetime | None) -> datetime | None:
    from serving.errors import ApiError

    if value is not None and value.tzinfo is None:
        raise ApiError(422, "T100", "请求参数不符合要求", "时间参数必须带时区，例如 2026-03-01T00:00:00+08:00",
                       errors=[{"field": "query", "type": "timezone_required", "message": "时间参数必须带时区"}])
    return value
