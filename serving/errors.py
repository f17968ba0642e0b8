"""Map errors to RFC 9457 problem+json responses with stable codes.

Validation errors list each failing field and rule but never echo the submitted value (it may
be a name, an ID number or the petition text).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from triage.errors import (
    ArtifactMismatchError,
    InvalidPetitionError,
    StageNotReadyError,
    TaxonomyError,
    TriageError,
)
from triage.review import ReviewActionError
from triage.store.errors import CaseNotFoundError, ConflictError

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

# Stable problem codes of the HTTP layer (clients switch on `code`, never on `detail`):
#   T100 422 request body or query fails validation      T120 422 Idempotency-Key reused with another request
#   T121 422 Idempotency-Key header malformed             T130 422 review action not allowed in the case's state
#   T401 401 missing, unknown or revoked API key          T403 403 the key's role may not call this endpoint
#   T404 404 no such resource (also: not visible to this role — confidential cases are never 403)
#   T405 405 method not allowed                           T409 409 conflict (task claimed by someone else or done,
#   T413 413 body too large                                        case changed meanwhile, same id with other content)
#   T429 429 rate limit for this key exceeded (Retry-After)
#   T000 500 unexpected; T2xx/T3xx 500 data or model mismatch; T400 503 a pipeline stage is not ready


class ApiError(Exception):
    """An error the HTTP layer raises on purpose; rendered as problem+json with a stable code."""

    def __init__(self, status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extra = extra


def not_found(what: str = "资源") -> ApiError:
    return ApiError(404, "T404", "未找到", f"{what}不存在或无权查看")
_STATUS: list[tuple[type[TriageError], int]] = [
    (CaseNotFoundError, 404),
    (ConflictError, 409),
    (ReviewActionError, 422),
    (InvalidPetitionError, 422),
    (TaxonomyError, 500),
    (ArtifactMismatchError, 500),
    (StageNotReadyError, 503),
]


def problem(status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": f"/problems/{code}", "title": title, "status": status, "code": code, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _clean_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        msg = str(e.get("msg", ""))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"field": ".".join(loc), "type": e.get("type"), "message": msg})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.title, exc.detail, headers=exc.headers or None, **exc.extra)

    @app.exception_handler(TriageError)
    async def _triage_error(request: Request, exc: TriageError) -> JSONResponse:
        status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
        if status >= 500:
            logger.warning("request failed path=%s code=%s", request.url.path, exc.code)
        return problem(status, exc.code, exc.title, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_validation_errors(list(exc.errors()))
        fields = ", ".join(e["field"] for e in errors)
        return problem(422, "T100", "信访件内容不符合要求", f"请求校验失败：{fields}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "T404", 405: "T405", 413: "T413", 429: "T429"}.get(exc.status_code, f"T{exc.status_code}")
        title = {404: "未找到", 405: "不支持的请求方法"}.get(exc.status_code, str(exc.detail))
        return problem(exc.status_code, code, title, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Log the type only: an exception message may quote the input.
        logger.error("unhandled error path=%s type=%s", request.url.path, type(exc).__name__)
        return problem(500, "T000", "内部错误", "服务内部错误，请稍后重试或联系管理员")
