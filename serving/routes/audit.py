"""The append-only audit trail (read-only) and its hash-chain verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from serving.auth import Principal, require
from serving.deps import StoreDep
from triage.store.records import AuditEventRecord, AuditVerification

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditPage(BaseModel):
    data: list[AuditEventRecord]
    next_after_seq: int | None


@router.get("", response_model=AuditPage)
async def list_audit(
    store: StoreDep,
    principal: Annotated[Principal, Depends(require("audit_read"))],
    case_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Audit events in chain order after `after_seq` (optionally of one case)."""
    events = await run_in_threadpool(store.audit_events, case_id=case_id, after_seq=after_seq, limit=limit)
    return AuditPage(data=events, next_after_seq=events[-1].seq if len(events) == limit else None)


@router.get("/verify", response_model=AuditVerification)
async def verify_audit(store: StoreDep, principal: Annotated[Principal, Depends(require("audit_read"))]) -> AuditVerification:
    """Recompute the hash chain and report the first broken event, if any."""
    return await run_in_threadpool(store.verify_audit)
