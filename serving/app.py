"""FastAPI application factory.

Start with `triage serve` or `uvicorn serving.app:create_app --factory`. Everything heavy is
built once in the lifespan, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serving.errors import install_error_handlers
from serving.limits import BodySizeLimit
from serving.logs import configure_logging
from serving.ner import LacTagger
from serving.routes import health, petitions
from serving.settings import ServiceSettings
from triage.entities import EntityExtractor
from triage.pipeline import TriagePipeline
from triage.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)


def build_pipeline(settings: ServiceSettings) -> tuple[TriagePipeline, str | None]:
    """Load the domain data and whatever stages are available; report the model directory used."""
    taxonomy = load_taxonomy(settings.data_dir)
    extractor = EntityExtractor(taxonomy.gazetteer, LacTagger() if settings.ner else None)
    model_dir: str | None = None
    classifier = None
    if (settings.model_dir / "manifest.json").exists():
        from serving.sessions import OnnxClassifier

        # A manifest that does not match the taxonomy raises ArtifactMismatchError: fail fast at start-up.
        classifier = OnnxClassifier(settings.model_dir, taxonomy, intra_op_threads=settings.onnx_threads)
        model_dir = str(settings.model_dir)
    else:
        logger.warning("no model at %s: the classify stage is not available", settings.model_dir)
    return TriagePipeline(taxonomy, extractor=extractor, classifier=classifier), model_dir


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipeline, model_dir = build_pipeline(settings)
        app.state.pipeline = pipeline
        app.state.model_dir = model_dir
        logger.info("service ready=%s stages=%s", pipeline.ready, pipeline.readiness())
        yield

    app = FastAPI(
        title="信访智能分办 Petition triage",
        version="0.1.0",
        description="依法分类处理建议：法定途径、责任单位、诉求类型、标记、实体与重复件关联。",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(petitions.router)
    return app
