"""Model versions: list what is registered and loaded, activate one (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from serving.auth import Principal, require
from serving.deps import StoreDep
from serving.idempotency import run_idempotent

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelView(BaseModel):
    name: str
    kind: str
    path: str
    sha256: str
    active: bool
    loaded: bool  # the model this worker is serving now
    activated_at: datetime | None
    activated_by: str | None
    created_at: datetime
    manifest: dict[str, Any] | None


class ModelList(BaseModel):
    data: list[ModelView]
    loaded: str | None
    note: str = "激活后各工作进程在 TRIAGE_MODEL_POLL_SECONDS 秒内于后台加载新模型并切换；加载失败则继续使用原模型"


def _views(store: Any, loaded: str | None) -> list[ModelView]:
    from triage.store.models import ModelVersion

    with store.read() as s:
        rows = s.query(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.id).all()
        return [ModelView(name=r.name, kind=r.kind, path=r.path, sha256=r.sha256, active=r.active, loaded=r.name == loaded,
                          activated_at=r.activated_at, activated_by=r.activated_by, created_at=r.created_at,
                          manifest=r.manifest) for r in rows]


@router.get("", response_model=ModelList)
async def list_models(request: Request, store: StoreDep,
                      principal: Annotated[Principal, Depends(require("model_read"))]) -> ModelList:
    """Registered model versions, which one is active and which one this worker serves."""
    loaded = getattr(request.app.state, "model_version", None)
    return ModelList(data=await run_in_threadpool(_views, store, loaded), loaded=loaded)


@router.post("/{name}/activate", response_model=ModelView,
             responses={404: {"description": "模型版本未登记（T404）"}, 403: {"description": "T403"}})
async def activate_model(request: Request, store: StoreDep, principal: Annotated[Principal, Depends(require("model_admin"))],
                         name: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")]) -> JSONResponse:
    """Make a registered model version the active one (audited). Every worker loads it in the background within
    TRIAGE_MODEL_POLL_SECONDS and swaps it in; `loaded` says whether the worker that answered serves it yet."""
    loaded = getattr(request.app.state, "model_version", None)

    def execute() -> tuple[int, Any]:
        r = store.activate_model_version(name, actor=principal.actor, role=principal.role)
        view = ModelView(name=r.name, kind=r.kind, path=r.path, sha256=r.sha256, active=r.active, loaded=r.name == loaded,
                         activated_at=r.activated_at, activated_by=r.activated_by, created_at=r.created_at,
                         manifest=r.manifest)
        return 200, view.model_dump(mode="json")

    return await run_in_threadpool(run_idempotent, request, principal, {"name": name}, execute)
