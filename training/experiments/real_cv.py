"""5-fold cross-validated estimate of the corpus heads on the real messages (train + dev), per head.

    .venv/bin/python -m training.experiments.real_cv [-f track -f department -f request_type] [--folds 5]
        [--json var/eval/real-cv.json] [--extra data/datasets/weak/replies.jsonl[:WEIGHT]] [--set key=value]
        [--title-repeat K ...]

Complements the 320-message real test split (whose rare tracks have 1-8 examples): the 1,780 real train+dev
messages are cut into five stratified folds; each fold is predicted by heads trained, with the configuration of
training/configs/base.toml (members, class weight, calibration, real rows weighted by `data_weights`), on
written/train plus the other four real folds — as `make train-default` trains the default model, except that
each head fits its own vectoriser (no shared vocabulary across heads). The real test split is never read.
Prints one JSON object: per head the pooled out-of-fold macro-F1 / accuracy (department: top-3), the mean and
standard deviation over folds, and per-class F1 with support.

`--extra FILE[:WEIGHT]` adds the rows of FILE that carry a head's field to every fold's training (never to the
scored folds), at WEIGHT (default: the file's `data_weights` weight in the config, else 1) — e.g. the weakly
labelled messages of training/weak.py, which exclude every human-labelled message — except for a head whose
`heads.<field>.exclude_data` matches FILE (as `triage train` leaves it out: track and real/active.jsonl). `--set`
overrides the config as `triage train --set` does.

`--real DIR` cross-validates DIR/train.jsonl + DIR/dev.jsonl instead (an earlier snapshot of the real splits: with
the rows added since as `--extra`, the same scored rows show what the new labels bring).

A head with `heads.<field>.target_data` (domain adaptation, training/baseline.py `augment_domains`) trains with the
written rows as source and the real rows (and extra files matching the patterns) as target, as `triage train` does.

`--oof DIR` saves each head's out-of-fold probabilities (with classes, gold labels and fold numbers) to DIR/<field>.npz.

`--real-frac F` trains each fold on a seeded share F of its real training rows (the written and extra rows and the
scored rows unchanged): the learning curve that says whether more labelled real messages would help.

Soft labels (`--set second_choice_weight=F`, TrainConfig): each real training row the labeller was not sure of
(and each extra row with a `second_choice`: data/datasets/real/active.jsonl) also trains as its second choice at
F × its weight, as `triage train` does (never scored by the calibration).
`--confidence high=A,medium=B,low=C` multiplies the real training rows' weights by their labeller's confidence.

`--title-repeat K` builds every row's input (training and scored rows alike) as its title ×K + text
(training.datasets.model_input; rows without a title: the text alone); given several times, each K is run back to
back on the same folds and the output maps K → result. Without it, K is base.toml's `[input] title_repeat` (as
`triage train` builds inputs).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from training.baseline import LinearTextHead
from training.config import load_config
from training.datasets import (
    ROOT,
    append_second_choices,
    display_path,
    labelled,
    load_jsonl,
    print_report,
    row_input,
    second_choice,
)
from training.metrics import head_metrics, topk_accuracy

WRITTEN = ROOT / "data" / "corpus" / "written" / "train.jsonl"
REAL = [ROOT / "data" / "datasets" / "real" / f"{s}.jsonl" for s in ("train", "dev")]
REAL_SHOWN = "data/datasets/real/train.jsonl"  # how `data_weights` patterns see the real rows (as `triage train` does)


def _extra_spec(spec: str) -> tuple[Path, float | None]:
    """`FILE[:WEIGHT]` → (path, weight); without a weight None: each head then uses its `data_weights` weight."""
    path_s, _, weight_s = spec.partition(":")
    return Path(path_s), float(weight_s) if weight_s else None


def _confidence_factor(row: dict[str, Any], factors: dict[str, float] | None) -> float:
    """Training-weight factor for a real row by its labeller's confidence (high / medium / low); 1 without factors."""
    if not factors:
        return 1.0
    return factors.get(str(row.get("confidence")), 1.0)


def _ambiguity(rows: list[dict[str, Any]], fld: str, pred: np.ndarray) -> dict[str, Any]:
    """Out-of-fold accuracy by the labeller's confidence, and the share of predictions that are the gold label or
    the labeller's second choice (how much of the error is on messages the labeller found ambiguous)."""
    by: dict[str, list[bool]] = {}
    either = 0
    for r, p in zip(rows, pred, strict=True):
        by.setdefault(str(r.get("confidence")), []).append(p == r[fld])
        either += int(p == r[fld] or p == second_choice(r, fld))
    return {"accuracy_by_confidence": {k: {"n": len(v), "accuracy": round(float(np.mean(v)), 4)}
                                       for k, v in sorted(by.items())},
            "accuracy_gold_or_second_choice": round(either / max(1, len(rows)), 4)}


def run(fields: list[str], n_folds: int, extra: list[str] | None = None, overrides: list[str] | None = None,
        title_repeat: int | None = None, real_frac: float = 1.0, oof: Path | None = None,
        real_dir: Path | None = None, confidence: dict[str, float] | None = None) -> dict[str, Any]:
    config = load_config(overrides=overrides)
    title_repeat = config.input.title_repeat if title_repeat is None else title_repeat
    real_weight = config.weight_of(REAL_SHOWN)
    written_rows = load_jsonl(WRITTEN).rows
    real_paths = REAL if real_dir is None else [real_dir / f"{s}.jsonl" for s in ("train", "dev")]
    real_rows = [r for p in real_paths for r in load_jsonl(p).rows]
    specs = [_extra_spec(s) for s in extra or []]
    extras = [(load_jsonl(path).rows, weight, display_path(path)) for path, weight in specs]
    out: dict[str, Any] = {"real_rows": len(real_rows), "written_rows": len(written_rows), "folds": n_folds,
                           "real_weight": real_weight, "overrides": overrides or [], "title_repeat": title_repeat,
                           "real_frac": real_frac, "confidence": confidence, "second_choice_weight": config.second_choice_weight,
                           "extra": [{"path": p, "rows": len(rows), "weight": w if w is not None else config.weight_of(p)}
                                     for rows, w, p in extras], "heads": {}}
    for fld in fields:
        t0 = time.perf_counter()
        w_rows, w_y = labelled(written_rows, fld)
        w_wt = [1.0] * len(w_y)  # written rows, then the extra rows at their weight: always in training
        w_shown = [display_path(WRITTEN)] * len(w_y)  # source file per row: adaptation target and calibration domain
        for rows, weight, shown in extras:
            if config.excludes(fld, shown):
                continue
            e_rows, e_y = labelled(rows, fld)
            e_weight = weight if weight is not None else config.weight_of(shown, fld)
            w_rows, w_y, w_wt = w_rows + e_rows, w_y + e_y, w_wt + [e_weight] * len(e_y)
            w_shown += [shown] * len(e_y)
        r_rows, r_y = labelled(real_rows, fld)
        w_x = [row_input(r, title_repeat) for r in w_rows]
        r_x = [row_input(r, title_repeat) for r in r_rows]
        y = np.asarray(r_y, dtype=object)
        # Stratify on the label; classes with fewer rows than folds are spread by the shuffle only.
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=config.seed).split(r_x, y))
        classes: list[str] | None = None
        proba: np.ndarray | None = None
        per_fold = []
        rng = np.random.default_rng(config.seed)
        for tr, te in folds:
            if real_frac < 1.0:  # learning curve: a seeded share of the fold's real training rows
                tr = np.sort(rng.permutation(tr)[: round(real_frac * len(tr))])
            texts = w_x + [r_x[i] for i in tr]
            labels = w_y + [r_y[i] for i in tr]
            r_w = config.weight_of(REAL_SHOWN, fld)
            weights = w_wt + [r_w * _confidence_factor(r_rows[i], confidence) for i in tr]
            shown_rows = w_shown + [REAL_SHOWN] * len(tr)
            target = [config.is_target(fld, p) for p in shown_rows] if config.adapts(fld) else None
            cal_weight = config.calibration.domain_weights(shown_rows)
            origin = None
            fraction = config.second_choice_for(fld)
            if fraction > 0:  # soft labels of every training row (the real fold's and the extra files'), as `triage
                # train` adds them: after the ordinary rows, never scored by the calibration
                fold_rows = w_rows + [r_rows[i] for i in tr]
                all_rows, weights, target, cal_weight, origin = append_second_choices(
                    fold_rows, fld, fraction, weights, target, None if cal_weight is None else list(cal_weight))
                texts += [row_input(a, title_repeat) for a in all_rows[len(fold_rows):]]
                labels += [a[fld] for a in all_rows[len(fold_rows):]]
            head = LinearTextHead(config.members_for(fld), config).fit(texts, labels, weights, target, cal_weight, origin)
            p = head.predict_proba([r_x[i] for i in te])
            if classes is None:
                classes = sorted(set(w_y) | set(r_y))
                proba = np.zeros((len(r_x), len(classes)))
            assert proba is not None
            cols = [classes.index(str(c)) for c in head.classes_]
            proba[np.ix_(te, cols)] = p
            per_fold.append(head_metrics(fld, [r_y[i] for i in te], proba[te], classes))
        assert proba is not None and classes is not None
        pooled = head_metrics(fld, r_y, proba, classes)
        row: dict[str, Any] = {
            "n": len(r_y),
            "macro_f1": pooled["macro_f1"], "accuracy": pooled["accuracy"],
            "macro_f1_folds_mean": round(float(np.mean([m["macro_f1"] for m in per_fold])), 4),
            "macro_f1_folds_std": round(float(np.std([m["macro_f1"] for m in per_fold])), 4),
            "accuracy_folds_std": round(float(np.std([m["accuracy"] for m in per_fold])), 4),
            "per_class": pooled.get("per_class"), "seconds": round(time.perf_counter() - t0, 1),
            "real_weight": config.weight_of(REAL_SHOWN, fld),
        }
        row.update(_ambiguity(r_rows, fld, np.asarray(classes, dtype=object)[proba.argmax(axis=1)]))
        row["top3"] = topk_accuracy(r_y, proba, classes, 3)
        row["top3_folds_std"] = round(float(np.std([topk_accuracy([r_y[i] for i in te], proba[te], classes, 3)
                                                    for _, te in folds])), 4)
        out["heads"][fld] = row
        if oof is not None:  # the out-of-fold probabilities, for analyses after the run (decision rules, errors)
            oof.mkdir(parents=True, exist_ok=True)
            fold_of = np.empty(len(r_y), dtype=np.int64)
            for k, (_, te) in enumerate(folds):
                fold_of[te] = k
            np.savez(oof / f"{fld}.npz", proba=proba, classes=np.asarray(classes), gold=y, fold=fold_of)
        logging.getLogger(__name__).info("%s: macro-F1 %.3f", fld, row["macro_f1"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-f", "--field", action="append", default=[])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--extra", action="append", default=[], help="FILE[:WEIGHT]: extra training rows in every fold")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override key.path=value")
    ap.add_argument("--real-frac", type=float, default=1.0,
                    help="learning curve: train on this seeded share of each fold's real training rows (scored rows unchanged)")
    ap.add_argument("--real", type=Path, default=None,
                    help="cross-validate DIR/train.jsonl + DIR/dev.jsonl instead of data/datasets/real (an earlier snapshot)")
    ap.add_argument("--oof", type=Path, default=None, help="write each head's out-of-fold probabilities to DIR/<field>.npz")
    ap.add_argument("--title-repeat", type=int, action="append", default=[],
                    help="title ×K before the text in every row's input; repeat to compare several K back to back")
    ap.add_argument("--confidence", default=None,
                    help="real-row weight factors by labeller confidence, e.g. high=1,medium=0.8,low=0.4")
    args = ap.parse_args()
    conf = ({k: float(v) for k, v in (kv.split("=") for kv in args.confidence.split(","))}
            if args.confidence else None)
    logging.basicConfig(level=logging.WARNING)
    fields = args.field or ["track", "department", "request_type"]
    if len(args.title_repeat) <= 1:
        k = args.title_repeat[0] if args.title_repeat else None  # None: the config's [input] title_repeat
        result = run(fields, args.folds, args.extra, args.overrides, k, args.real_frac, args.oof, args.real,
                     conf)
    else:
        result = {str(k): run(fields, args.folds, args.extra, args.overrides, k, args.real_frac, args.oof, args.real,
                              conf)
                  for k in args.title_repeat}
    print_report(result, args.json)


if __name__ == "__main__":
    main()
