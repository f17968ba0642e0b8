"""The change report of a re-classification job, assembled from its processed shards.

Files in the report directory (all written under temporary names and renamed into place):

- ``cases.parquet`` / ``cases.csv`` — one row per processed case: ids, position in the source,
  old/new track, department and status, the classifier's top-1 track and department with scores,
  request type, priority, the rules that fired, whether stored entities were reused, `changed`.
  Labels and ids only: no text, names, phone or ID numbers.
- ``transitions.csv`` — counts of old → new per field (track, department, status); a record
  without an old value counts under ``(none)``.
- ``transitions.png`` — one old × new count matrix per field.
- ``bad_records.csv`` — every record that was skipped, with source, position, id (when known),
  the stage and a message naming the field and rule (never the value).
- ``summary.json`` — counts and the versions the job ran with (deterministic: no timings; those
  go to ``run.json``).

The shards are streamed one at a time, so memory stays flat with the number of cases.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.jobs.sources import REPORT_FIELDS, write_text_atomic
from training.jobs.triager import OUTPUT_SCHEMA, REPORT_COLUMNS

logger = logging.getLogger(__name__)

NONE = "(none)"
REPORT_SCHEMA = pa.schema([OUTPUT_SCHEMA.field(c) for c in REPORT_COLUMNS])
BAD_COLUMNS = ("source", "line", "case_id", "stage", "error")


@dataclass
class ReportCounts:
    processed: int = 0
    bad: int = 0
    changed: int = 0
    entities_reused: int = 0
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def field_stats(self, fld: str) -> tuple[int, int]:
        """(cases with an old value, of which changed) for one field."""
        with_old = sum(n for (f, o, _), n in self.transitions.items() if f == fld and o != NONE)
        changed = sum(n for (f, o, nw), n in self.transitions.items() if f == fld and o != NONE and o != nw)
        return with_old, changed


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def write_report(out_dir: Path, parts: Iterable[Path], staged_bad: Iterable[Mapping[str, Any]],
                 meta: Mapping[str, Any], source_order: list[str]) -> ReportCounts:
    """Assemble the report files in `out_dir` from the processed shards (in order).

    Args:
        out_dir: the report directory.
        parts: processed shard files (triager.OUTPUT_SCHEMA), in job order.
        staged_bad: records rejected while staging (dicts with BAD_COLUMNS).
        meta: versions and options for summary.json.
        source_order: input sources in job order (bad records sort by source, then position).
    """
    counts = ReportCounts()
    bad: list[dict[str, Any]] = [dict(b) for b in staged_bad]
    cases_pq, cases_csv = out_dir / "cases.parquet", out_dir / "cases.csv"
    writer = pq.ParquetWriter(_tmp(cases_pq), REPORT_SCHEMA)
    with _tmp(cases_csv).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(REPORT_COLUMNS)
        for part in parts:
            table = pq.read_table(part)
            failed = pc.is_valid(table.column("error"))
            for row in table.filter(failed).select(["source", "line", "case_id", "error"]).to_pylist():
                stage, _, message = row["error"].partition(": ")
                bad.append({**row, "stage": stage, "error": message})
            good = table.filter(pc.invert(failed)).select(list(REPORT_COLUMNS)).cast(REPORT_SCHEMA)
            writer.write_table(good)
            cols = {c: good.column(c).to_pylist() for c in REPORT_COLUMNS}
            for i in range(good.num_rows):
                out.writerow(["" if cols[c][i] is None else _csv_value(cols[c][i]) for c in REPORT_COLUMNS])
                for fld in REPORT_FIELDS:
                    counts.transitions[(fld, cols[f"old_{fld}"][i] or NONE, cols[f"new_{fld}"][i] or NONE)] += 1
            counts.processed += good.num_rows
            counts.changed += sum(1 for v in cols["changed"] if v)
            counts.entities_reused += sum(1 for v in cols["entities_reused"] if v)
    writer.close()
    os.replace(_tmp(cases_pq), cases_pq)
    os.replace(_tmp(cases_csv), cases_csv)

    rank = {s: i for i, s in enumerate(source_order)}
    bad.sort(key=lambda b: (rank.get(b["source"], len(rank)), b["line"]))
    counts.bad = len(bad)
    _write_csv(out_dir / "bad_records.csv", BAD_COLUMNS, ([b.get(c) for c in BAD_COLUMNS] for b in bad))
    order = {f: i for i, f in enumerate(REPORT_FIELDS)}
    rows = sorted(counts.transitions.items(), key=lambda kv: (order[kv[0][0]], -kv[1], kv[0][1], kv[0][2]))
    _write_csv(out_dir / "transitions.csv", ("field", "old", "new", "count", "changed"),
               ([f, o, n, c, o != NONE and o != n] for (f, o, n), c in rows))
    summary = {
        **meta,
        "processed": counts.processed,
        "bad_records": counts.bad,
        "changed": counts.changed,
        "entities_reused": counts.entities_reused,
        "fields": {f: dict(zip(("with_old", "changed"), counts.field_stats(f), strict=True)) for f in REPORT_FIELDS},
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    plot_transitions(counts, out_dir / "transitions.png")
    return counts


def _csv_value(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def _write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    with _tmp(path).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for row in rows:
            out.writerow(["" if v is None else _csv_value(v) for v in row])
    os.replace(_tmp(path), path)


def plot_transitions(counts: ReportCounts, path: Path) -> None:
    """One old × new count matrix per field (log colour scale) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, len(REPORT_FIELDS), figsize=(7 * len(REPORT_FIELDS), 7.5))
    for ax, fld in zip(axes, REPORT_FIELDS, strict=True):
        cells = {(o, n): c for (f, o, n), c in counts.transitions.items() if f == fld}
        olds = sorted({o for o, _ in cells}, key=lambda s: (s == NONE, s))
        news = sorted({n for _, n in cells}, key=lambda s: (s == NONE, s))
        with_old, changed = counts.field_stats(fld)
        ax.set_title(f"{fld}: {changed} of {with_old} with an old value changed", fontsize=11)
        if not cells:
            ax.axis("off")
            continue
        m = np.zeros((len(olds), len(news)))
        for (o, n), c in cells.items():
            m[olds.index(o), news.index(n)] = c
        ax.imshow(np.where(m > 0, m, np.nan), cmap="viridis", norm=LogNorm(vmin=1, vmax=max(1.0, m.max())),
                  aspect="auto")
        ax.set_xticks(range(len(news)), news, rotation=90, fontsize=7)
        ax.set_yticks(range(len(olds)), olds, fontsize=7)
        ax.set_xlabel("new")
        ax.set_ylabel("old")
        if m.size <= 144:
            for (i, j), c in np.ndenumerate(m):
                if c:
                    ax.text(j, i, f"{int(c)}", ha="center", va="center", fontsize=7, color="white")
    fig.suptitle(f"Re-classification: old → new ({counts.processed} cases, {counts.bad} skipped)")
    fig.tight_layout()
    tmp = _tmp(path)
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def summary_lines(counts: ReportCounts, top: int = 8) -> list[str]:
    """The printed summary: totals, then per field the most frequent changes."""
    lines = [f"processed {counts.processed}, skipped (bad records) {counts.bad}, changed {counts.changed}, "
             f"entities reused {counts.entities_reused}"]
    for fld in REPORT_FIELDS:
        with_old, changed = counts.field_stats(fld)
        lines.append(f"{fld}: {changed} of {with_old} with an old value changed")
        moves = sorted(((c, o, n) for (f, o, n), c in counts.transitions.items()
                        if f == fld and o != NONE and o != n), reverse=True)[:top]
        lines += [f"  {o} → {n}: {c}" for c, o, n in moves]
        if with_old == 0:
            new = Counter({n: c for (f, _, n), c in counts.transitions.items() if f == fld})
            lines.append("  new: " + ", ".join(f"{n} {c}" for n, c in new.most_common(top)))
    return lines
