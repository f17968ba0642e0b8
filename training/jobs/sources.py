"""Job input from petition files: streaming readers (datasets) and validation into staged rows.

Files are read with `datasets` in streaming mode, so memory does not grow with the file:
JSONL through the `text` builder (one item per physical line, so a malformed line is reported
with its line number instead of failing the whole file, and heterogeneous records need no common
schema), CSV through the `csv` builder with every column read as a string, Parquet through the
`parquet` builder. Every record becomes one *staged row* (STAGED_SCHEMA) or a bad record with
its position and a message that names the field and the rule, never the value.

Positions: JSONL the line number; CSV the row number counting the header as row 1 (the line
number unless a quoted field spans lines); Parquet the row number (1-based).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from triage.schemas import Entities, Petition

logger = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
#: Decision fields a report compares (old → new).
REPORT_FIELDS = ("track", "department", "status")

STAGED_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),  # position among the job's valid records
    pa.field("source", pa.string(), nullable=False),  # file name, or "store"
    pa.field("line", pa.int64(), nullable=False),  # position in the source (see module docstring)
    pa.field("case_id", pa.string(), nullable=False),
    pa.field("petition", pa.string(), nullable=False),  # validated Petition as JSON
    pa.field("entities", pa.string()),  # stored Entities as JSON, reused when the extractor version matches
    pa.field("extractor_version", pa.string()),
    pa.field("old_track", pa.string()),
    pa.field("old_department", pa.string()),
    pa.field("old_status", pa.string()),
    pa.field("human_confirmed", pa.bool_()),  # store input: the current decision was confirmed by an officer
])


class RecordError(ValueError):
    """A record that cannot be processed; the message never contains a field's value."""


@dataclass(frozen=True)
class RawRecord:
    """One item of an input file: a record, a bad record (error) or a blank line (neither)."""

    position: int
    data: dict[str, Any] | None
    error: str | None = None
    human_confirmed: bool = False  # store input: the current decision was confirmed by an officer


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path.name}: unknown input format {path.suffix!r}; use .jsonl, .csv or .parquet")
    return fmt


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def iter_file(path: Path, skip: int = 0) -> Iterator[RawRecord]:
    """Stream the items of one input file after the first `skip` items (resuming a job).

    Args:
        path: a .jsonl, .csv or .parquet file.
        skip: items already consumed (blank lines of a JSONL file count as items).

    Yields:
        RawRecord per item, in file order.
    """
    datasets = _quiet_datasets()
    fmt = detect_format(path)
    if fmt == "jsonl":
        ds = datasets.load_dataset("text", data_files=str(path), split="train", streaming=True)
        for i, item in enumerate(ds.skip(skip) if skip else ds, start=skip + 1):
            line = item["text"]
            if not line.strip():
                yield RawRecord(i, None)
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                # The decoder's message names a position, never the content.
                yield RawRecord(i, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(data, dict):
                yield RawRecord(i, None, "record is not a JSON object")
                continue
            yield RawRecord(i, data)
    elif fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), None)
        if not header:
            return
        features = datasets.Features({name: datasets.Value("string") for name in header})
        ds = datasets.load_dataset("csv", data_files=str(path), split="train", streaming=True, features=features,
                                   keep_default_na=False)
        for i, item in enumerate(ds.skip(skip) if skip else ds, start=skip + 2):
            yield _csv_record(i, item)
    else:
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
        for i, item in enumerate(ds.skip(skip) if skip else ds, start=skip + 1):
            yield RawRecord(i, dict(item))


def _csv_record(position: int, item: Mapping[str, str | None]) -> RawRecord:
    data: dict[str, Any] = {k: v for k, v in item.items() if v not in (None, "")}
    for key in ("petitioner", "entities", "flags"):  # nested fields travel as JSON text in CSV
        if isinstance(data.get(key), str):
            try:
                data[key] = json.loads(data[key])
            except json.JSONDecodeError:
                return RawRecord(position, None, f"{key}: not valid JSON")
    if isinstance(data.get("headcount"), str):
        try:
            data["headcount"] = int(data["headcount"])
        except ValueError:
            return RawRecord(position, None, "headcount: not an integer")
    return RawRecord(position, data)


def describe_validation_error(exc: ValidationError) -> str:
    """Field path + rule for every error; pydantic's own str() would echo the input value."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def stored_entities(entities: Any, extractor_version: Any) -> tuple[str | None, str | None]:
    """(entities JSON, extractor version) when a record carries usable extracted entities."""
    if not isinstance(extractor_version, str) or not extractor_version or entities is None:
        return None, None
    if isinstance(entities, str):
        try:
            entities = json.loads(entities)
        except json.JSONDecodeError:
            return None, None
    try:
        return Entities.model_validate(entities).model_dump_json(), extractor_version
    except ValidationError:
        return None, None  # not our extractor's output (e.g. gold spans of the corpus): extract again


def stage_record(data: Mapping[str, Any], *, seq: int, source: str, line: int,
                 previous: Mapping[str, tuple[str | None, ...]] | None = None,
                 human_confirmed: bool = False) -> dict[str, Any]:
    """Validate one input record into a staged row.

    Old labels are the record's own `track`/`department`/`status` fields, or the new labels of a
    previous report when `previous` is given (it wins: it is what the office saw last).

    Raises:
        RecordError: no id, or the record is not a valid petition.
    """
    if not _label(data.get("id")):
        raise RecordError("id: missing (records in files must carry an id)")
    try:
        petition = Petition.model_validate(data)
    except ValidationError as exc:
        raise RecordError(describe_validation_error(exc)) from None
    assert petition.id is not None
    old: tuple[str | None, ...] = tuple(_label(data.get(f)) for f in REPORT_FIELDS)
    if previous is not None and petition.id in previous:
        old = previous[petition.id]
    entities, extractor_version = stored_entities(data.get("entities"), data.get("extractor_version"))
    return {
        "seq": seq, "source": source, "line": line, "case_id": petition.id,
        "petition": petition.model_dump_json(exclude_none=True),
        "entities": entities, "extractor_version": extractor_version,
        "old_track": old[0], "old_department": old[1], "old_status": old[2],
        "human_confirmed": human_confirmed,
    }


def load_previous_report(report_dir: Path) -> dict[str, tuple[str | None, ...]]:
    """case id → (track, department, status) of an earlier report's per-case rows (its new labels).

    Kept in memory (three short strings per case) for the lookup while staging.
    """
    path = report_dir / "cases.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-case rows of a previous report here")
    table = pq.read_table(path, columns=["case_id", *(f"new_{f}" for f in REPORT_FIELDS)])
    cols = [table.column(c).to_pylist() for c in table.column_names]
    return {cid: tuple(vals) for cid, *vals in zip(*cols, strict=True)}


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, fsync it and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
