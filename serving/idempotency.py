"""Idempotency-Key on writes (draft-ietf-httpapi-idempotency-key-header).

A write sent with ``Idempotency-Key: <key>`` is executed once per API key: the first successful
response is stored in the case store (table ``idempotency_keys``, so every worker sees it) and a
retry with the same key and the same request (method, path, query, JSON body) gets that stored
response again, with ``Idempotent-Replayed: true``. The same key with a different request is
refused with 422 (code T120). Error responses are not stored: a failed write changed nothing
(one transaction), so retrying it executes it again.

Crash safety for triage: when the body carries no ``id``, the case id is derived from the API key
and the Idempotency-Key (``derived_case_id``), so a retry after a crash between storing the case
and storing the response finds the same case (the store's save is idempotent by id and content)
instead of registering the petition twice. Two concurrent requests with the same key resolve the
same way: one inserts, the other finds the case unchanged, both answer the same case.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from serving.auth import Principal
from serving.errors import ApiError
from serving.metrics import IDEMPOTENT_REPLAYS

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,100}$")  # visible ASCII, no spaces


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, validated (422 T121 when malformed), or None."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip().strip('"')
    if not _KEY_RE.match(key):
        raise ApiError(422, "T121", "Idempotency-Key 格式不正确", "Idempotency-Key 须为 1–100 个可见 ASCII 字符（不含空格）")
    return key


def request_fingerprint(request: Request, body: Any) -> str:
    """sha256 over method, route path, query string and the canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    query = "&".join(sorted(request.url.query.split("&"))) if request.url.query else ""
    material = f"{request.method}\n{request.url.path}\n{query}\n{canonical}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def derived_case_id(secret: bytes, principal: Principal, key: str) -> str:
    """A stable case id for (API key, Idempotency-Key): CQ-K<20 hex>."""
    digest = hmac.new(secret, f"idem:{principal.key_id}:{key}".encode(), hashlib.sha256).hexdigest()
    return f"CQ-K{digest[:20]}"


def _replay(record: Any) -> JSONResponse:
    IDEMPOTENT_REPLAYS.inc()
    return JSONResponse(record.response, status_code=record.status_code, headers={"Idempotent-Replayed": "true"})


def _mismatch() -> ApiError:
    return ApiError(422, "T120", "Idempotency-Key 已用于其他请求",
                    "该 Idempotency-Key 已用于内容不同的请求；重试请使用原请求，新请求请使用新的 Idempotency-Key")


def run_idempotent(
    request: Request, principal: Principal, body: Any, execute: Callable[[], tuple[int, Any]],
    *, key: str | None = None,
) -> JSONResponse:
    """Execute a write once per Idempotency-Key; `execute` returns (status, JSON-able body)."""
    key = key if key is not None else idempotency_key(request)
    if key is None:
        status, payload = execute()
        return JSONResponse(payload, status_code=status)
    store = request.app.state.store
    fingerprint = request_fingerprint(request, body)
    record = store.get_idempotency(principal.db_id, key)
    if record is not None:
        if record.request_hash != fingerprint:
            raise _mismatch()
        return _replay(record)
    status, payload = execute()
    if not 200 <= status < 300:
        return JSONResponse(payload, status_code=status)
    stored = store.put_idempotency(principal.db_id, key, request_hash=fingerprint, status_code=status, response=payload)
    if stored.request_hash != fingerprint:
        # A concurrent request with the same key and another body stored first.
        logger.warning("idempotency key raced with a different request key_id=%s", principal.key_id)
        raise _mismatch()
    if stored.response != payload:
        return _replay(stored)  # a concurrent identical request stored first: answer what it answered
    return JSONResponse(payload, status_code=status)
