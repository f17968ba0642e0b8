"""The audit trail's hash chain: canonical JSON of each event, sha256 over it and the previous hash.

An event's hash covers every field of `triage.schemas.AuditEvent` except `hash` itself, including
`prev_hash`, so changing, removing or reordering any stored event breaks the chain from there on.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "seq", "case_id", "actor", "role", "action", "at", "before", "after", "reason_code", "comment",
    "model_versions", "rules_version", "prev_hash",
)


def json_roundtrip(value: Any) -> Any:
    """The value as it comes back from a JSON column (so hashing before and after storage agrees)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def format_at(at: datetime) -> str:
    """UTC ISO-8601 with microseconds: the one textual form of `at` that is hashed."""
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_event(fields: dict[str, Any]) -> bytes:
    """Canonical JSON bytes of an event (sorted keys, no spaces, UTF-8)."""
    body = {k: fields.get(k) for k in HASHED_FIELDS}
    at = body["at"]
    if isinstance(at, datetime):
        body["at"] = format_at(at)
    body["model_versions"] = body["model_versions"] or {}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def event_hash(fields: dict[str, Any]) -> str:
    """sha256 hex digest of the canonical event (prev_hash included)."""
    return hashlib.sha256(canonical_event(fields)).hexdigest()
