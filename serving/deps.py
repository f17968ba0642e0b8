"""FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from triage.pipeline import TriagePipeline
from triage.store import CaseStore


def get_pipeline(request: Request) -> TriagePipeline:
    pipeline: TriagePipeline = request.app.state.pipeline
    return pipeline


PipelineDep = Annotated[TriagePipeline, Depends(get_pipeline)]


def get_store(request: Request) -> CaseStore:
    store: CaseStore = request.app.state.store
    return store


StoreDep = Annotated[CaseStore, Depends(get_store)]
