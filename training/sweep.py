"""Hyperparameter sweep on a dev split (never on test): `python -m training.sweep --train T --dev D -f FIELD`.

Each candidate is a list of members (see training/config.py); calibration is skipped (it does
not change the arg-max much and is fitted on train folds anyway). Prints one JSON line per
candidate with dev macro-F1, accuracy and the feature count, best last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.baseline import LinearTextHead
from training.config import MemberConfig, load_config
from training.datasets import labelled, load_jsonl, row_input
from training.metrics import head_metrics

CHAR = {"name": "char", "analyzer": "char", "ngram_min": 1, "ngram_max": 3, "min_df": 2}
WORD = {"name": "word", "analyzer": "word", "ngram_min": 1, "ngram_max": 2, "min_df": 2}


def candidates(grid: str = "full") -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    if grid == "compare":
        c50 = {**CHAR, "max_features": 50000}
        w25 = {**WORD, "max_features": 25000, "weight": 0.5}
        out["svc char13 C=1 mf=50k"] = [{**c50, "C": 1.0}]
        out["svc char13 C=0.3 mf=50k"] = [{**c50, "C": 0.3}]
        out["svc char13+word12 C=1 mf=50k/25k ww=0.5"] = [{**c50, "C": 1.0}, {**w25, "C": 1.0}]
        out["nb char13 C=1 mf=50k"] = [{**c50, "classifier": "nbsvm", "C": 1.0}]
        out["nb char13 C=0.3 mf=50k"] = [{**c50, "classifier": "nbsvm", "C": 0.3}]
        out["nb char13+word12 C=1 mf=50k/25k ww=0.5"] = [{**c50, "classifier": "nbsvm", "C": 1.0},
                                                         {**w25, "classifier": "nbsvm", "C": 1.0}]
        out["nb char13 C=1 mf=80k"] = [{**CHAR, "classifier": "nbsvm", "C": 1.0, "max_features": 80000}]
        return out
    if grid == "nbsvm":
        for c in (0.3, 1.0):
            out[f"nb char13 C={c} mf=80000"] = [{**CHAR, "classifier": "nbsvm", "C": c, "max_features": 80000}]
            for ww in (0.5, 1.0):
                out[f"nb char13+word12 C={c} mf=80000 ww={ww}"] = [
                    {**CHAR, "classifier": "nbsvm", "C": c, "max_features": 80000},
                    {**WORD, "classifier": "nbsvm", "C": c, "max_features": 40000, "weight": ww}]
        return out
    if grid == "corpus":
        for c in (0.3, 1.0):
            out[f"char13 C={c} mf=50000"] = [{**CHAR, "C": c, "max_features": 50000}]
        out["char13+word12 C=1.0 mf=50000 ww=0.5"] = [
            {**CHAR, "C": 1.0, "max_features": 50000}, {**WORD, "C": 1.0, "max_features": 25000, "weight": 0.5}]
        out["char14 C=1.0 mf=50000"] = [{**CHAR, "ngram_max": 4, "C": 1.0, "max_features": 50000}]
        return out
    for c in (0.3, 1.0):
        for mf in (30000, 80000):
            out[f"char13 C={c} mf={mf}"] = [{**CHAR, "C": c, "max_features": mf}]
            for ww in (0.5, 1.0):
                out[f"char13+word12 C={c} mf={mf} ww={ww}"] = [
                    {**CHAR, "C": c, "max_features": mf}, {**WORD, "C": c, "max_features": mf // 2, "weight": ww}]
    out["char14 C=1 mf=80000"] = [{**CHAR, "ngram_max": 4, "C": 1.0, "max_features": 80000}]
    out["char13 lr C=30 mf=80000"] = [{**CHAR, "classifier": "lr", "C": 30.0, "max_features": 80000}]
    out["word12 C=1 mf=40000"] = [{**WORD, "C": 1.0, "max_features": 40000}]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=Path, action="append", required=True)
    ap.add_argument("--dev", type=Path, action="append", required=True)
    ap.add_argument("-f", "--field", required=True)
    ap.add_argument("--grid", choices=("full", "corpus", "nbsvm", "compare"), default="full")
    args = ap.parse_args()
    cfg = load_config(overrides=["calibration.method=\"none\""])
    tr_rows, tr_y = labelled([r for p in args.train for r in load_jsonl(p).rows], args.field)
    dv_rows, dv_y = labelled([r for p in args.dev for r in load_jsonl(p).rows], args.field)
    tr_x = [row_input(r, cfg.input.title_repeat) for r in tr_rows]
    dv_x = [row_input(r, cfg.input.title_repeat) for r in dv_rows]
    results = []
    for name, members in candidates(args.grid).items():
        t0 = time.perf_counter()
        head = LinearTextHead([MemberConfig.model_validate(m) for m in members], cfg).fit(tr_x, tr_y)
        m = head_metrics(args.field, dv_y, head.predict_proba(dv_x), [str(c) for c in head.classes_])
        row = {"candidate": name, "macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "top3": m.get("top3"),
               "features": head.n_features_, "seconds": round(time.perf_counter() - t0, 1)}
        results.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    best = max(results, key=lambda r: r["macro_f1"])
    print(json.dumps({"best": best}, ensure_ascii=False))


if __name__ == "__main__":
    main()
