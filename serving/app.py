"""FastAPI application factory.

Start with `triage serve` or `uvicorn serving.app:create_app --factory`. Everything heavy is
built once in the lifespan, never at import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from serving.auth import store_key_verifier
from serving.errors import install_error_handlers
from serving.limits import BodySizeLimit
from serving.logs import configure_logging
from serving.metrics import MetricsMiddleware, render_metrics
from serving.ner import word_tagger
from serving.ratelimit import RateLimiter
from serving.routes import audit, cases, health, models, petitions, review
from serving.settings import ServiceSettings
from triage.entities import EntityExtractor
from triage.errors import TriageError
from triage.pipeline import TriagePipeline
from triage.store import CaseStore
from triage.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)


def build_pipeline(settings: ServiceSettings) -> tuple[TriagePipeline, str | None]:
    """Load the domain data and whatever stages are available; report the model directory used."""
    taxonomy = load_taxonomy(settings.data_dir)
    tagger = word_tagger(settings.ner_engine, settings.onnx_threads) if settings.ner else None
    extractor = EntityExtractor(taxonomy.gazetteer, tagger, departments=taxonomy.responsibilities.values())
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


def build_store(settings: ServiceSettings) -> CaseStore:
    """The case store at TRIAGE_DATABASE_URL (schema upgraded on first use for SQLite by default)."""
    from triage.store import load_pii_secret, make_engine
    from triage.store.engine import is_sqlite_url
    from triage.store.migrate import auto_upgrade_allowed

    pool = {} if is_sqlite_url(settings.database_url) else dict(
        pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow, pool_pre_ping=settings.db_pool_pre_ping)
    engine = make_engine(settings.database_url, **pool)
    secret = load_pii_secret(settings.pii_key.get_secret_value() if settings.pii_key else None, settings.pii_key_file)
    return CaseStore(engine, pii_secret=secret, auto_upgrade=auto_upgrade_allowed(engine, settings.db_auto_upgrade))


def attach_store_stages(pipeline: TriagePipeline, store: CaseStore, settings: ServiceSettings | None = None) -> None:
    """Link stage over the case store (SqlCaseIndex) and the rule decider, when build_pipeline left them out."""
    if pipeline.linker is None:
        try:
            from triage.linking.linker import load_linker
            from triage.store.index import SqlCaseIndex

            index = (SqlCaseIndex(store) if settings is None else
                     SqlCaseIndex(store, index_dir=settings.link_index_dir, nprobe=settings.link_nprobe))
            pipeline.linker = load_linker(index, secret=store.pii_secret)
        except (ImportError, TriageError) as exc:
            logger.warning("link stage not available: %s", type(exc).__name__)
    if pipeline.decider is None:
        try:
            from triage.rules import load_decider

            rules_path = settings.data_dir / "policy" / "rules.toml" if settings is not None else None
            pipeline.decider = load_decider(pipeline.taxonomy, rules_path)
        except (ImportError, TriageError) as exc:
            logger.warning("decide stage not available: %s", type(exc).__name__)


def preload_link_index(pipeline: TriagePipeline) -> None:
    """Load the stored vectors into the link index's in-memory mirror before the worker takes requests.

    Loaded lazily, the first request a worker served waited for the whole table (measured: 4.5–15 s with
    100k stored cases on two busy cores — the multi-second p99 of bench/load.py was this). A store that
    cannot be read yet (schema behind) is left to load on first use, as before."""
    vectors = getattr(getattr(pipeline.linker, "index", None), "vectors", None)
    if vectors is None:
        return
    try:
        logger.info("link index: %d stored vectors loaded", vectors.refresh())
    except Exception as exc:  # noqa: BLE001 — start-up must not fail here; the link stage retries on first use
        logger.warning("link index not preloaded: %s", type(exc).__name__)


def limit_blas_threads() -> None:
    """One BLAS thread per worker (numpy's and faiss's OpenBLAS/MKL). A request runs small matrix products one
    at a time; with a thread pool per BLAS library per worker on two busy cores, the pools' spinning threads
    stalled the vector search and the verifier under load. faiss's OpenMP threads are set by the vector mirror."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def register_loaded_model(store: CaseStore, model_dir: str | None) -> str | None:
    """Register the served model version in the store (idempotent by name); return its name."""
    if model_dir is None:
        return None
    import hashlib
    import json
    from pathlib import Path

    manifest_path = Path(model_dir) / "manifest.json"
    raw = manifest_path.read_bytes()
    manifest = json.loads(raw)
    summary = {k: manifest.get(k) for k in ("name", "version", "created_at", "taxonomy_version", "segmenter", "git_commit")}
    summary["heads"] = sorted(manifest.get("heads", {}))
    name = str(manifest.get("version") or manifest.get("name"))
    try:
        store.register_model_version(name, str(model_dir), hashlib.sha256(raw).hexdigest(), summary)
    except TriageError as exc:  # a database behind its migrations: the routes answer 503 until it is upgraded
        logger.warning("model version not registered: %s", exc.code)
    return name


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = build_store(settings)
        app.state.store = store
        app.state.key_verifier = store_key_verifier(store, cache_seconds=settings.auth_cache_seconds)
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.workers)
        pipeline, model_dir = build_pipeline(settings)
        attach_store_stages(pipeline, store, settings)
        limit_blas_threads()
        preload_link_index(pipeline)
        app.state.pipeline = pipeline
        app.state.model_dir = model_dir
        app.state.model_version = register_loaded_model(store, model_dir)
        logger.info("service ready=%s stages=%s", pipeline.ready, pipeline.readiness())
        watch: asyncio.Task[None] | None = None
        if settings.model_poll_seconds > 0:
            from serving.model_watch import ModelWatcher

            app.state.model_watcher = ModelWatcher(app.state, store, poll_seconds=settings.model_poll_seconds,
                                                   onnx_threads=settings.onnx_threads)
            watch = asyncio.create_task(app.state.model_watcher.run())
        yield
        if watch is not None:
            watch.cancel()
            with suppress(asyncio.CancelledError):
                await watch
        store.engine.dispose()

    app = FastAPI(
        title="信访智能分办 Petition triage",
        version="0.1.0",
        description="依法分类处理建议：法定途径、责任单位、诉求类型、标记、实体与重复件关联。",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.add_api_route("/metrics", render_metrics, methods=["GET"], tags=["health"], include_in_schema=False)
    app.include_router(petitions.router)
    app.include_router(cases.router)
    app.include_router(review.router)
    app.include_router(models.router)
    app.include_router(audit.router)
    return app
