"""API keys, roles and what each role may do.

A key is ``trk_<key_id>_<secret>`` (triage.store: ``create_api_key``/``verify_api_key``): ``key_id``
is public (it names the key in logs and the audit trail), the secret is 32 random bytes. Only the
SHA-256 of the whole key is stored (a random 256-bit secret needs no slow hash).
Keys are created, listed and revoked with ``triage keys …`` and sent as ``X-API-Key: …`` or
``Authorization: Bearer …``.

Roles (DOMAIN.md §4 (c)):

* clerk — registers petitions and triages them; sees only the cases it registered itself;
* reviewer — the review queue: claim, confirm or override, merge, split; reads cases;
* supervisor — everything a reviewer does, and the only role that sees confidential
  检举控告 cases (flag ``confidential``); for every other role they do not exist (404, not 403);
* admin — models (list, activate) and API keys; no case content;
* auditor — read-only audit trail and its hash-chain verification, review statistics.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.errors import ApiError

logger = logging.getLogger(__name__)

Role = Literal["clerk", "reviewer", "supervisor", "admin", "auditor"]
ROLES: tuple[Role, ...] = ("clerk", "reviewer", "supervisor", "admin", "auditor")

# Roles that may see cases flagged confidential (检举控告: §30¶3 检举材料不得透露).
CONFIDENTIAL_ROLES: frozenset[str] = frozenset({"supervisor"})

# Who may do what. One table, so the authorisation tests can be generated from it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "triage": frozenset({"clerk", "reviewer", "supervisor"}),
    "case_read": frozenset({"clerk", "reviewer", "supervisor"}),
    "review": frozenset({"reviewer", "supervisor"}),
    "unmerge": frozenset({"reviewer", "supervisor"}),  # undo a confirmed merge (reason code required)
    "review_stats": frozenset({"supervisor", "auditor", "admin"}),
    "model_read": frozenset({"admin", "supervisor", "auditor"}),
    "model_admin": frozenset({"admin"}),
    "audit_read": frozenset({"auditor", "admin"}),
}

KEY_PREFIX = "trk"
_KEY_RE = re.compile(r"^trk_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    """The caller: an API key (never a petitioner)."""

    key_id: str  # the key's public prefix
    name: str  # officer or service account the key was issued to
    role: Role
    db_id: int = 0  # api_keys.id (scopes Idempotency-Key records)

    @property
    def sees_confidential(self) -> bool:
        return self.role in CONFIDENTIAL_ROLES

    @property
    def actor(self) -> str:
        """How the caller appears in the audit trail."""
        return f"{self.name}#{self.key_id}"


def parse_key_id(raw: str) -> str | None:
    """The public key id of a well-formed key, else None (malformed keys never reach the store)."""
    m = _KEY_RE.match(raw)
    return m.group(1) if m else None


class KeyVerifier(Protocol):
    def __call__(self, raw_key: str) -> Principal | None:
        """The principal of an active key, or None for unknown, revoked or malformed keys."""


_now = time.monotonic  # the cache's clock (tests replace it)
_CACHE_MAX = 4096


def store_key_verifier(store: Any, *, cache_seconds: float = 0.0) -> KeyVerifier:
    """Verify keys against the case store's api_keys table (sha256 only, revocation honoured).

    With `cache_seconds` > 0 (TRIAGE_AUTH_CACHE_SECONDS, default 2 s) a key found valid is remembered
    by this worker for that long, so a revocation takes effect within `cache_seconds` instead of at
    once; it saves a store read per request. Only valid keys are remembered (unknown keys always reach
    the store), by the SHA-256 of the key, never the key itself; at most 4,096 entries.
    """
    cache: dict[str, tuple[float, Principal]] = {}
    lock = threading.Lock()

    def lookup(raw_key: str) -> Principal | None:
        rec = store.verify_api_key(raw_key)
        if rec is None or rec.role not in ROLES:
            return None
        return Principal(key_id=rec.prefix, name=rec.name, role=rec.role, db_id=rec.id)

    if cache_seconds <= 0:
        return lookup

    def verify(raw_key: str) -> Principal | None:
        digest = hashlib.sha256(raw_key.encode()).hexdigest()
        now = _now()
        hit = cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = lookup(raw_key)
        with lock:
            if principal is None:
                cache.pop(digest, None)
            else:
                if len(cache) >= _CACHE_MAX:
                    for k in [k for k, (until, _) in cache.items() if until <= now] or list(cache)[: _CACHE_MAX // 2]:
                        cache.pop(k, None)
                cache[digest] = (now + cache_seconds, principal)
        return principal

    return verify


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (trk_…)")
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer trk_…")


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "T401", "未认证", detail, headers={"WWW-Authenticate": 'Bearer realm="triage"'})


def authenticate(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal:
    """Resolve the caller from X-API-Key or Authorization: Bearer; 401 problem otherwise."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    raw = api_key or (bearer.credentials if bearer else None)
    if not raw:
        _count_auth_failure("missing")
        raise _unauthorized("缺少 API 密钥：请在 X-API-Key 或 Authorization: Bearer 请求头中提供")
    verifier: KeyVerifier = request.app.state.key_verifier
    principal = verifier(raw.strip()) if parse_key_id(raw.strip()) else None
    if principal is None:
        _count_auth_failure("invalid")
        raise _unauthorized("API 密钥无效或已吊销")
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(principal.key_id)
    request.state.principal = principal
    return principal


def _count_auth_failure(reason: str) -> None:
    from serving.metrics import AUTH_FAILURES

    AUTH_FAILURES.labels(reason=reason).inc()


def require(permission: str) -> Callable[..., Principal]:
    """A dependency that admits only the roles holding `permission` (403 problem otherwise)."""
    allowed = PERMISSIONS[permission]

    def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "T403", "无权操作", f"角色 {principal.role} 无权执行此操作（需要：{'、'.join(sorted(allowed))}）")
        return principal

    dependency.__name__ = f"require_{permission}"
    return dependency
