"""`triage promote`: make a candidate model the active one only if it is not worse.

Gate: both models are evaluated on the same fixed labelled file (`triage evaluate` metrics).
For every field the active model has a head for and the file has gold labels for, the candidate
must have that head and `candidate.macro_f1 >= active.macro_f1 - margin` (department also
`top3`). If there is no active model yet, the candidate is promoted.

Promotion copies the candidate directory next to the active one and swaps it in with two
renames (active → `.NAME.prev`, copy → active); each rename is atomic on one file system and a
service reads its model directory only at start-up, so no reader ever sees a half-copied model.
Every decision is appended to `models/PROMOTIONS.jsonl` (who/when/what/metrics).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.evaluate import evaluate
from triage.manifest import MANIFEST_FILE, load_manifest

logger = logging.getLogger(__name__)

GATED_METRICS = {"department": ("macro_f1", "top3")}
DEFAULT_METRICS = ("macro_f1",)


@dataclass
class PromotionResult:
    promoted: bool
    reason: str
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    candidate: dict[str, Any] = field(default_factory=dict)
    active: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "reason": self.reason, "comparisons": self.comparisons,
                "candidate": self.candidate, "active": self.active}


def compare(candidate: dict[str, Any], active: dict[str, Any], active_fields: list[str], margin: float) -> list[dict[str, Any]]:
    """One row per gated (field, metric): both values, the difference and whether it passes."""
    rows = []
    for fld in active_fields:
        if fld not in active:
            continue  # no gold labels for this field in the file
        for metric in GATED_METRICS.get(fld, DEFAULT_METRICS):
            a = active[fld].get(metric)
            c = candidate.get(fld, {}).get(metric)
            ok = c is not None and a is not None and c >= a - margin
            rows.append({"field": fld, "metric": metric, "active": a, "candidate": c,
                         "delta": None if c is None or a is None else round(c - a, 4), "ok": ok})
    return rows


def install(candidate: Path, active: Path) -> None:
    """Copy `candidate` into place as `active` (copy beside it, then two atomic renames)."""
    active.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{active.name}.incoming.", dir=active.parent))
    shutil.copytree(candidate, staging, dirs_exist_ok=True)
    backup = active.parent / f".{active.name}.prev"
    if backup.exists():
        shutil.rmtree(backup)
    if active.exists():
        active.rename(backup)
    staging.rename(active)


def promote(candidate: Path, active: Path, data: Path, margin: float = 0.0, log_path: Path | None = None) -> PromotionResult:
    """Evaluate both models on `data`, install the candidate if it passes the gate, record the decision."""
    cand_manifest = load_manifest(candidate)
    cand_report = evaluate(candidate, data)
    summary = {"dir": str(candidate), "version": cand_manifest.version}
    if not (active / MANIFEST_FILE).exists():
        result = PromotionResult(True, f"no active model at {active}: candidate installed", [],
                                 {**summary, "report": cand_report}, None)
    else:
        act_manifest = load_manifest(active)
        act_report = evaluate(active, data)
        rows = compare(cand_report, act_report, list(act_manifest.heads), margin)
        missing = [f for f in act_manifest.heads if f in act_report and f not in cand_manifest.heads]
        if not rows and not missing:
            ok, reason = False, f"{data} has no gold labels for any head of the active model: nothing to compare"
        elif missing:
            ok, reason = False, f"candidate lacks head(s) {', '.join(missing)} that the active model has"
        else:
            worse = [f"{r['field']}.{r['metric']} {r['candidate']} < {r['active']} - {margin}" for r in rows if not r["ok"]]
            ok = not worse
            reason = "candidate is not worse on every gated metric" if ok else "candidate is worse: " + "; ".join(worse)
        result = PromotionResult(ok, reason, rows, {**summary, "report": cand_report},
                                 {"dir": str(active), "version": act_manifest.version, "report": act_report})
    if result.promoted:
        install(candidate, active)
        logger.info("promoted %s (%s) to %s", candidate, cand_manifest.version, active)
    log_path = log_path or active.parent / "PROMOTIONS.jsonl"
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({
            "at": datetime.now(UTC).replace(microsecond=0).isoformat(), "data": str(data), "margin": margin,
            "candidate": summary, "active": (result.active or {}).get("version"), "promoted": result.promoted,
            "reason": result.reason, "comparisons": result.comparisons,
        }, ensure_ascii=False) + "\n")
    return result
