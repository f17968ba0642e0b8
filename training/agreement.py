"""Inter-annotator agreement: an independent second labelling of a random sample vs the first labels.

The sample (data/corpus/agreement/sample.jsonl) was drawn with a fixed seed from the written corpus
and the real-message labels; the second labellers (labels_R*.jsonl) never saw the first labels.
Reported per part (written / real) and per field: raw agreement and Cohen's kappa; flags per flag
(present/absent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.corpus import CORPUS_DIR, load_real_labels, read_jsonl

FIELDS = ("track", "department", "request_type")
FLAGS = ("group", "risk", "repeat", "confidential", "pii_sensitive")


def _first_labels(corpus_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for split in ("train", "dev", "test"):
        path = corpus_dir / "written" / f"{split}.jsonl"
        if path.exists():
            for _, r in read_jsonl(path):
                out[("written", r["id"])] = r
    for r in load_real_labels(corpus_dir):
        out[(r["source"], str(r["key"]))] = r
    return out


def _second_labels(corpus_dir: Path) -> list[dict[str, Any]]:
    """All second-labelling files (labels_R2.jsonl, labels_R3.jsonl …: independent labellers)."""
    paths = sorted((corpus_dir / "agreement").glob("labels_R*.jsonl"))
    if not paths:
        raise FileNotFoundError(f"{corpus_dir / 'agreement'}: no labels_R*.jsonl — the second labelling has not been done")
    return [r for p in paths for _, r in read_jsonl(p)]


def agreement(corpus_dir: Path = CORPUS_DIR) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score, f1_score

    first = _first_labels(corpus_dir)
    # real_active: the actively selected messages (labels_A1, training only) are reported apart from the sample
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {"written": [], "real": [], "real_active": []}
    for r2 in _second_labels(corpus_dir):
        key = (r2["source"], str(r2["key"]))
        if key in first:
            part = "written" if r2["source"] == "written" else "real"
            pairs[part + ("_active" if first[key].get("selection") == "active" else "")].append((first[key], r2))
    report: dict[str, Any] = {}
    for part, items in pairs.items():
        if not items:
            continue
        part_report: dict[str, Any] = {"n": len(items)}
        def kappa(a: list[Any], b: list[Any]) -> float | None:
            # Undefined when both labellings use one and the same class only.
            if len(set(a) | set(b)) < 2:
                return None
            return round(float(cohen_kappa_score(a, b)), 3)

        for f in FIELDS:
            a = [x[f] for x, _ in items]
            b = [y[f] for _, y in items]
            present = sorted(set(a) | set(b))
            part_report[f] = {
                "agreement": round(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 3),
                "kappa": kappa(a, b),
                # The second labelling scored against the first as a model is scored (training/metrics.head_metrics):
                # the human reference for the model's macro-F1 on the same kind of data.
                "macro_f1": round(float(f1_score(a, b, labels=present, average="macro", zero_division=0)), 3),
            }
        for fl in FLAGS:
            a2 = [fl in (x.get("flags") or []) for x, _ in items]
            b2 = [fl in (y.get("flags") or []) for _, y in items]
            part_report[f"flag:{fl}"] = {
                "agreement": round(sum(x == y for x, y in zip(a2, b2, strict=True)) / len(a2), 3),
                "kappa": kappa(a2, b2),
                "first_positive": sum(a2), "second_positive": sum(b2),
            }
        # Per first labeller file (real parts): whether a later batch of labels agrees as well as the first ones.
        files = sorted({x.get("labeller_file") for x, _ in items if x.get("labeller_file")})
        if len(files) > 1:
            part_report["by_first_labeller"] = {
                name: {"n": len(sub), **{f: round(sum(x[f] == y[f] for x, y in sub) / len(sub), 3) for f in FIELDS}}
                for name in files if (sub := [(x, y) for x, y in items if x.get("labeller_file") == name])}
        report[part] = part_report
    return report


def disagreements(corpus_dir: Path = CORPUS_DIR, field: str = "track") -> list[dict[str, Any]]:
    """The items where the two labellings differ on `field` (for discussing and sharpening the guide)."""
    first = _first_labels(corpus_dir)
    out = []
    for r2 in _second_labels(corpus_dir):
        r1 = first.get((r2["source"], str(r2["key"])))
        if r1 is not None and r1[field] != r2[field]:
            out.append({"source": r2["source"], "key": r2["key"], "first": r1[field], "second": r2[field],
                        "second_note": r2.get("note")})
    return out


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=1)
