"""Prometheus metrics (prometheus-client) and the middleware that records HTTP requests.

Several uvicorn workers: prometheus-client's multiprocess mode. ``triage serve --workers N``
(N > 1) points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (serving/cli.py) before the workers start, every
worker writes its samples there, and ``/metrics`` aggregates all workers' files
(``MultiProcessCollector``) — whichever worker answers the scrape reports the whole service.
With one worker and no ``PROMETHEUS_MULTIPROC_DIR`` the in-process registry is exported.

Labels never carry personal data or free text: route templates (``/api/v1/cases/{case_id}``,
never the concrete path), methods, status codes, and closed label sets (track, status, action).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter("triage_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "triage_http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=_LATENCY_BUCKETS
)
PETITIONS = Counter(
    "triage_petitions_total", "Petitions triaged", ["mode", "status", "track"]
)  # mode: dry_run | persisted | replayed
STAGE_LATENCY = Histogram("triage_stage_duration_seconds", "Pipeline stage latency", ["stage"], buckets=_LATENCY_BUCKETS)
REVIEW_ACTIONS = Counter("triage_review_actions_total", "Review actions", ["action"])
AUTH_FAILURES = Counter("triage_auth_failures_total", "Rejected API keys", ["reason"])
RATE_LIMITED = Counter("triage_rate_limited_total", "Requests rejected by the per-key rate limit")
IDEMPOTENT_REPLAYS = Counter("triage_idempotent_replays_total", "Writes answered from a stored Idempotency-Key response")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_metrics(request: Request) -> Response:
    """The text exposition of every worker's metrics (multiprocess) or this process's."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Count and time every HTTP request by route template (set by the router after matching)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method=method, route=template, status=str(status)).inc()
            HTTP_LATENCY.labels(method=method, route=template).observe(time.perf_counter() - start)


def record_stages(stages_ms: dict[str, float]) -> None:
    for stage, ms in stages_ms.items():
        STAGE_LATENCY.labels(stage=stage).observe(ms / 1000.0)

