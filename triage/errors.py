"""Error hierarchy with stable codes.

The domain core raises these; the HTTP layer (serving/errors.py) and the CLI map them to status
codes and exit codes. Messages never contain petition text or personal data: they name fields,
lengths, codes and paths only.
"""

from __future__ import annotations


class TriageError(Exception):
    """Base class: every error the domain core raises on purpose."""

    code = "T000"
    title = "处理失败"


class InvalidPetitionError(TriageError, ValueError):
    """The petition cannot be processed as given (empty, too long, bad field)."""

    code = "T100"
    title = "信访件内容不符合要求"


class TaxonomyError(TriageError):
    """A data file in data/ is missing, malformed or inconsistent with the label contract."""

    code = "T200"
    title = "分类体系数据文件有误"


class ArtifactMismatchError(TriageError):
    """A model artifact does not match the loaded taxonomy, labels or tokenizer."""

    code = "T300"
    title = "模型与分类体系不匹配"


class StageNotReadyError(TriageError):
    """A pipeline stage is not available (no model loaded, component not built yet)."""

    code = "T400"
    title = "服务尚未就绪"

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"stage {stage!r} is not available: {detail}")
        self.stage = stage
        self.detail = detail
