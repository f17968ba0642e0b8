"""Load petition JSONL files for training and evaluation, and make fixed splits.

Files are read with `datasets` (JSON builder; mixed-type extra columns are tolerated); only the
`id`, `text` and the requested gold fields are kept. Gold fields are never model inputs: the
features are computed from `text` and, when the training config asks for it, the optional `title` (`model_input`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.manifest import compose_input, sha256_file
from triage.text import normalize, segmented_text

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ID_FIELDS = ("id", "rid")  # the public topic data carries a stable `rid` when `id` is null


@dataclass
class LoadedFile:
    path: Path
    sha256: str
    rows: list[dict[str, Any]]


def display_path(path: Path) -> str:
    """Path relative to the repository when inside it (stable across checkouts), else absolute."""
    p = path.resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def load_jsonl(path: Path) -> LoadedFile:
    """Read one JSONL file through `datasets`; each row as a dict with a non-empty `id` and `text`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a row has no text.
    """
    import datasets

    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(ds):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: row {i + 1} has no text")
        rid = next((row[f] for f in ID_FIELDS if row.get(f)), None)
        row["id"] = str(rid) if rid is not None else f"{path.stem}:{i + 1}"
        rows.append(row)
    logger.info("loaded %s: %d rows", display_path(path), len(rows))
    return LoadedFile(path=path, sha256=sha256_file(path), rows=rows)


def model_input(text: str, title: str | None = None, title_repeat: int = 0) -> str:
    """The string every head sees: the record's title ×`title_repeat` + text (triage.manifest.compose_input),
    normalised, segmented with the shared segment(), space-joined. `title_repeat` 0: the text alone."""
    return segmented_text(normalize(compose_input(text, title, title_repeat)))


def row_input(row: dict[str, Any], title_repeat: int = 0) -> str:
    """`model_input` of a JSONL record (its `text` and optional `title`)."""
    title = row.get("title")
    return model_input(row["text"], title if isinstance(title, str) else None, title_repeat)


def labelled(rows: list[dict[str, Any]], field: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows whose `field` holds a string label, and those labels."""
    keep = [r for r in rows if isinstance(r.get(field), str) and r[field]]
    return keep, [r[field] for r in keep]


def second_choice(row: dict[str, Any], field: str) -> str | None:
    """The labeller's second choice for `field` (real labels: `second_choice` = {"track": …, "department": …},
    given when the labeller was not sure), when the row has a label for `field` and the choice differs from it."""
    if not (isinstance(row.get(field), str) and row[field]):
        return None
    sc = row.get("second_choice")
    value = sc.get(field) if isinstance(sc, dict) else None
    return value if isinstance(value, str) and value and value != row.get(field) else None


def second_choice_rows(rows: list[dict[str, Any]], field: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Auxiliary rows for the labellers' second choices: for each row of `rows` (labelled for `field`) whose
    second choice differs from its label, a copy labelled with the second choice, and the index of that row.

    Appended to `rows` with `origin` (`LinearTextHead.fit`) = the indices, at a fraction of their origin's weight,
    they are soft labels: the model learns that the text is ambiguous between the two without the calibration ever
    scoring the second choice as gold.
    """
    aux, origin = [], []
    for i, r in enumerate(rows):
        alt = second_choice(r, field)
        if alt is not None:
            aux.append({**r, field: alt})
            origin.append(i)
    return aux, origin


def append_second_choices(
    rows: list[dict[str, Any]], field: str, fraction: float, weights: list[float], targets: list[bool] | None,
    calibration_weights: list[float] | None,
) -> tuple[list[dict[str, Any]], list[float], list[bool] | None, list[float] | None, list[int]]:
    """`rows` and their per-row lists extended by the `second_choice_rows`, as `LinearTextHead.fit` takes them: each
    auxiliary row weighs `fraction` × its origin's weight, is in its origin's domain, has calibration weight 0 (it is
    never scored), and `origin` (-1 for the ordinary rows) points at the row it copies."""
    aux, origin = second_choice_rows(rows, field)
    return (rows + aux, weights + [fraction * weights[i] for i in origin],
            None if targets is None else targets + [targets[i] for i in origin],
            None if calibration_weights is None else calibration_weights + [0.0] * len(origin),
            [-1] * len(rows) + origin)


def split_rows(rows: list[dict[str, Any]], fractions: dict[str, float], seed: int,
               stratify: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Seeded split; identical normalised texts stay together; stratified by `stratify` when given."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        key = hashlib.sha256(normalize(r["text"]).encode()).hexdigest()
        groups[key].append(r)
    strata: dict[str, list[str]] = defaultdict(list)
    for key, members in groups.items():
        strata[str(members[0].get(stratify)) if stratify else ""].append(key)
    names = list(fractions)
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    rng = random.Random(seed)
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        n = len(keys)
        bounds, acc = [], 0.0
        for name in names:
            acc += fractions[name]
            bounds.append(round(acc * n))
        start = 0
        for name, end in zip(names, bounds, strict=True):
            for key in keys[start:end]:
                out[name].extend(groups[key])
            start = end
    return out


def print_report(report: dict[str, Any], path: Path | None) -> None:
    """Print a command's JSON report on stdout and, with a path, also write it there."""
    text = json.dumps(report, ensure_ascii=False, indent=1)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
