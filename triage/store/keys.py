"""The secret behind keyed petitioner hashes (HMAC-SHA256, triage.pii.petitioner_key).

Taken from the setting when given (TRIAGE_PII_KEY); otherwise read from a key file, which is
created with 32 random bytes and mode 0600 on first use so a fresh clone works. Every process
that computes or matches petitioner keys (API workers, ingest, batch jobs) must use the same
secret: changing it makes earlier keys unmatchable.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)


def load_pii_secret(value: str | None, key_file: Path) -> bytes:
    """The petitioner-key secret: `value` when non-empty, else the key file (created when missing)."""
    if value:
        return value.encode("utf-8")
    if key_file.exists():
        data = key_file.read_bytes().strip()
        if not data:
            raise ValueError(f"petitioner key file {key_file} is empty: delete it or set TRIAGE_PII_KEY")
        return data
    key_file.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return key_file.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(token + b"\n")
    logger.warning("created a new petitioner key secret at %s (keep it: earlier keys depend on it)", key_file)
    return token
