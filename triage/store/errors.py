"""Errors of the case store. Messages name ids, fields and codes, never personal data or text."""

from __future__ import annotations

from triage.errors import TriageError


class StoreError(TriageError):
    """Base class of the store's own errors."""

    code = "T500"
    title = "案件库操作失败"


class CaseNotFoundError(StoreError, KeyError):
    """No case with this id (or a related row) exists."""

    code = "T404"
    title = "案件不存在"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else self.title


class ConflictError(StoreError):
    """The write conflicts with what is stored (maps to HTTP 409)."""

    code = "T409"
    title = "与已登记内容冲突"


class CaseConflictError(ConflictError):
    """The same case id was already registered with different content."""


class StaleVersionError(ConflictError):
    """Optimistic locking: the row changed since the caller read it."""

    title = "案件已被他人修改，请刷新后重试"
