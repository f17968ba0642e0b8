"""Load petition records (DESIGN.md format, JSONL) into the store as existing cases.

Idempotent by id: a record already stored with the same content is "unchanged", with other
content a "conflict" (left as stored). Bad lines are reported with their line number and a
precise reason that never quotes the value, and skipped; good lines are committed in batches.
Gold fields (track, department, duplicate_of …) are ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from triage.linking.index import LinkFeatures
from triage.schemas import Entities, Petition
from triage.store.repository import CaseStore, Registration

logger = logging.getLogger(__name__)


class Extractor(Protocol):
    version: str

    def extract(self, text: str, petition: Petition) -> Entities: ...


class Featurizer(Protocol):
    version: str

    def features(self, text: str) -> LinkFeatures: ...


@dataclass
class IngestReport:
    lines: int = 0
    inserted: int = 0
    unchanged: int = 0
    conflicts: list[tuple[int, str]] = field(default_factory=list)  # (line, case id)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.conflicts

    def summary(self) -> str:
        return (f"{self.lines} 行：新增 {self.inserted}，未变 {self.unchanged}，冲突 {len(self.conflicts)}，"
                f"错误 {len(self.bad)}")


def describe_validation_error(exc: ValidationError) -> str:
    """Field and rule of each failure, never the submitted value."""
    parts = []
    for e in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(p) for p in e.get("loc", ())) or "记录"
        msg = str(e.get("msg", ""))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{loc}: {msg}")
    return "；".join(parts)


def parse_line(raw: str) -> Petition:
    """One JSONL line → Petition with an id.

    Raises:
        ValueError: with a message that names the problem but not the content.
    """
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"不是合法的 JSON（{exc.msg}，第 {exc.colno} 列）") from None
    if not isinstance(obj, dict):
        raise ValueError(f"应为 JSON 对象，实际为 {type(obj).__name__}")
    if obj.get("id") in (None, ""):
        raise ValueError("缺少 id（文件中的记录必须带 id）")
    try:
        return Petition.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def ingest_file(
    path: Path,
    store: CaseStore,
    *,
    extractor: Extractor | None = None,
    featurizer: Featurizer | None = None,
    batch_size: int = 200,
    progress: Callable[[int], None] | None = None,
    actor: str = "ingest",
) -> IngestReport:
    """Register every good record of a JSONL file; report counts, conflicts and bad lines.

    Args:
        extractor: entity extractor (None: no entities, no place).
        featurizer: link featurizer (None: cases are not linkable by bands/vectors, only by petitioner).
        progress: called with the number of lines processed since the last call.
    """
    report = IngestReport()
    batch: list[tuple[int, Registration]] = []
    extractor_version = extractor.version if extractor else None

    def flush() -> None:
        if not batch:
            return
        outcomes = store.register_many([r for _, r in batch], actor=actor)
        for (line, reg), outcome in zip(batch, outcomes, strict=True):
            if outcome == "inserted":
                report.inserted += 1
            elif outcome == "unchanged":
                report.unchanged += 1
            else:
                report.conflicts.append((line, reg.petition.id or ""))
        batch.clear()

    for n, raw in _lines(path):
        report.lines = n
        if progress:
            progress(1)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.bad.append((n, f"不是合法的 UTF-8 编码（第 {exc.start + 1} 字节）"))
            continue
        if not line.strip():
            continue
        try:
            petition = parse_line(line)
        except ValueError as exc:
            report.bad.append((n, str(exc)))
            continue
        entities = extractor.extract(petition.text, petition) if extractor else None
        features = featurizer.features(petition.text) if featurizer else None
        batch.append((n, Registration(petition, entities, extractor_version, features)))
        if len(batch) >= batch_size:
            flush()
    flush()
    logger.info("ingest %s: lines=%d inserted=%d unchanged=%d conflicts=%d bad=%d", path.name, report.lines,
                report.inserted, report.unchanged, len(report.conflicts), len(report.bad))
    return report
