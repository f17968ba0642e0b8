"""Classification metrics shared by `triage train` (dev) and `triage evaluate` (any split)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from training.baseline import expected_calibration_error

TOP_K_FIELDS = {"department": 3}  # fields whose top-k accuracy is reported (DESIGN.md contract)


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (0 where undefined), rounded to 4 places."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def topk_accuracy(gold: list[str], proba: npt.NDArray[Any], labels: list[str], k: int) -> float:
    """Share of rows whose gold label is among the k most probable of `labels` (a label outside them: a miss)."""
    index = {label: i for i, label in enumerate(labels)}
    topk = np.argsort(-proba, axis=1)[:, :k]
    return round(float(np.mean([index.get(g, -1) in row for g, row in zip(gold, topk, strict=True)])), 4)


def head_metrics(field: str, gold: list[str], proba: npt.NDArray[Any], labels: list[str],
                 ece_bins: int = 15) -> dict[str, Any]:
    """macro_f1, accuracy, per_class {label: {f1, support}}, top3 (department), ece.

    Macro-F1 averages over every label that occurs in the gold data or in the predictions (a
    gold label the model cannot predict counts as F1 0).
    """
    lab = np.asarray(labels, dtype=object)
    pred = [str(x) for x in lab[proba.argmax(axis=1)]]
    present = sorted(set(gold) | set(pred))
    p, r, f1, support = precision_recall_fscore_support(gold, pred, labels=present, zero_division=0)
    out: dict[str, Any] = {
        "n": len(gold),
        "macro_f1": round(float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(gold, pred)), 4),
    }
    k = TOP_K_FIELDS.get(field)
    if k:
        out[f"top{k}"] = topk_accuracy(gold, proba, labels, k)
    index = {label: i for i, label in enumerate(labels)}
    y_idx = np.array([index.get(g, -1) for g in gold])
    known = y_idx >= 0
    out["ece"] = round(expected_calibration_error(proba[known], y_idx[known], ece_bins), 4) if known.any() else None
    out["per_class"] = {
        label: {"f1": round(float(f), 4), "precision": round(float(pp), 4), "recall": round(float(rr), 4),
                "support": int(s)}
        for label, pp, rr, f, s in zip(present, p, r, f1, support, strict=True)
    }
    return out
