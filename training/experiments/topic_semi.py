"""Topic head (`label`) candidates beyond topic_cv.py: title weighting, the unlabelled teddy2020 messages, stacking.

    .venv/bin/python -m training.experiments.topic_semi [--only NAME ...] [--out var/experiments/topic_semi.jsonl]

Same protocol as topic_cv.py: 5 stratified folds over the 80% training portion of teddy2020 (train + dev), the
20% test split is never read. Unlabelled pool = teddy2020 unlabeled + hot messages + replies (`text` only), minus
every text of teddy2020_messages_labeled (all splits, by normalised text) — so no test text enters any model.
It is used (a) to fit the vectoriser's vocabulary/idf and an LSA basis (TruncatedSVD), and (b) for pseudo-labels.
Every candidate here is linear in one TF-IDF vector (LSA: z = x·V), so it folds into the served linear head.
One JSON line per candidate: mean macro-F1 over the folds, its standard deviation and the pooled out-of-fold F1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from training.datasets import load_jsonl, model_input
from training.experiments.topic_cv import ROOT, SEED, char_vec, cv_report, experiment_args, nb_ratio, topic_rows, word_vec
from triage.text import normalize

PUBLIC = ROOT.parent / "shared" / "data" / "public"
UNLABELLED_FILES = ("teddy2020_unlabeled.jsonl", "teddy2020_hot_messages.jsonl", "teddy2020_replies.jsonl")


@dataclass
class Fold:
    """One fold: training/held-out texts of the input variant, labels, and the unlabelled pool."""

    tr: list[str]
    y: np.ndarray
    te: list[str]
    n: int
    unlab: list[str]


Scorer = Callable[[Fold], "np.ndarray | dict[str, np.ndarray]"]


def unlabelled_pool(public: Path = PUBLIC) -> list[str]:
    """Texts of the unlabelled files not equal (normalised) to any labelled teddy2020 message."""
    labelled_keys = {normalize(r["text"]) for r in load_jsonl(public / "teddy2020_messages_labeled.jsonl").rows}
    seen: set[str] = set()
    out = []
    for name in UNLABELLED_FILES:
        for r in load_jsonl(public / name).rows:
            key = normalize(r["text"])
            if key and key not in labelled_keys and key not in seen:
                seen.add(key)
                out.append(r["text"])
    return out


def with_title(row: dict[str, Any], repeat: int) -> str:
    """The message text preceded by its title `repeat` times (rows without a title: the text alone)."""
    title = (row.get("title") or "").strip()
    return "。".join([title] * repeat + [row["text"]]) if title and repeat else row["text"]


def nbsvm_fit(X: sp.csr_matrix, y: np.ndarray, n: int, C: float, w: np.ndarray | None = None) -> list[tuple[np.ndarray, Any]]:
    """One-vs-rest NBSVM (Wang & Manning 2012) with optional sample weights: [(r_k, LinearSVC_k)]."""
    out = []
    for k in range(n):
        r = nb_ratio(X, y, k)
        clf = LinearSVC(C=C, class_weight="balanced", random_state=SEED).fit(X @ sp.diags(r), (y == k).astype(int),
                                                                             sample_weight=w)
        out.append((r, clf))
    return out


def nbsvm_apply(models: list[tuple[np.ndarray, Any]], X: sp.csr_matrix) -> np.ndarray:
    return np.column_stack([clf.decision_function(X @ sp.diags(r)) for r, clf in models])


def nbsvm(vec_fit_unlab: bool = False, C: float = 1.0) -> Scorer:
    """NBSVM over char 1-3; `vec_fit_unlab`: the vectoriser's vocabulary and idf also see the unlabelled pool."""
    def run(f: Fold) -> np.ndarray:
        v = char_vec(1, 3)
        v.fit(f.tr + f.unlab if vec_fit_unlab else f.tr)
        return nbsvm_apply(nbsvm_fit(v.transform(f.tr), f.y, f.n, C), v.transform(f.te))
    return run


def lsa_member(f: Fold, dims: int, C: float) -> tuple[np.ndarray, np.ndarray]:
    """(NBSVM scores, LinearSVC-on-LSA scores) for the held-out texts; one vectoriser fitted on train + pool."""
    v = char_vec(1, 3)
    v.fit(f.tr + f.unlab)
    Xtr, Xte = v.transform(f.tr), v.transform(f.te)
    svd = TruncatedSVD(dims, random_state=SEED).fit(sp.vstack([Xtr, v.transform(f.unlab)]))
    Ztr, Zte = svd.transform(Xtr), svd.transform(Xte)
    scale = np.sqrt((Ztr**2).sum(1)).mean()  # a fixed scale (not per-row normalisation: that would not be linear)
    lsa = LinearSVC(C=C, class_weight="balanced", random_state=SEED).fit(Ztr / scale, f.y).decision_function(Zte / scale)
    return nbsvm_apply(nbsvm_fit(Xtr, f.y, f.n, 1.0), Xte), lsa


def lsa(dims: int, weights: tuple[float, ...], C: float = 1.0) -> Scorer:
    """The LSA member alone, and NBSVM + w × LSA member for each w (a linear sum of scores); one SVD per fold."""
    def run(f: Fold) -> dict[str, np.ndarray]:
        nb, ls = lsa_member(f, dims, C)
        return {"alone": ls, **{f"nbsvm + {w} ×": nb + w * ls for w in weights}}
    return run


def pseudo(keep: float, weight: float, rounds: int = 1) -> Scorer:
    """Self-training: NBSVM labels the pool, the `keep` fraction with the largest top1-top2 margin is added at `weight`."""
    def run(f: Fold) -> np.ndarray:
        v = char_vec(1, 3)
        v.fit(f.tr + f.unlab)
        Xtr, Xte, Xu = v.transform(f.tr), v.transform(f.te), v.transform(f.unlab)
        models = nbsvm_fit(Xtr, f.y, f.n, 1.0)
        for _ in range(rounds):
            su = nbsvm_apply(models, Xu)
            top2 = np.sort(su, axis=1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            pick = np.argsort(-margin)[: int(keep * len(f.unlab))]
            X = sp.vstack([Xtr, Xu[pick]]).tocsr()
            y = np.concatenate([f.y, su[pick].argmax(1)])
            w = np.concatenate([np.ones(len(f.y)), np.full(len(pick), weight)])
            models = nbsvm_fit(X, y, f.n, 1.0, w)
        return nbsvm_apply(models, Xte)
    return run


def stack_word(weights: tuple[float, ...], C: float = 0.5) -> Scorer:
    """NBSVM char 1-3 + w × LinearSVC over word 1-2 (separate vectoriser; a linear sum of scores), for each w."""
    def run(f: Fold) -> dict[str, np.ndarray]:
        v, w = char_vec(1, 3), word_vec(1, 2)
        Xtr, Xte = v.fit_transform(f.tr), v.transform(f.te)
        Wtr, Wte = w.fit_transform(f.tr), w.transform(f.te)
        nb = nbsvm_apply(nbsvm_fit(Xtr, f.y, f.n, 1.0), Xte)
        sv = LinearSVC(C=C, class_weight="balanced", random_state=SEED).fit(Wtr, f.y).decision_function(Wte)
        return {f"{x} ×": nb + x * sv for x in weights}
    return run


def candidates() -> dict[str, tuple[str, Scorer]]:
    """name → (input variant, scorer). Input variants: plain text, title×1, title×2."""
    return {
        "nbsvm char13 (current)": ("plain", nbsvm()),
        "nbsvm char13 title×1": ("title1", nbsvm()),
        "nbsvm char13 title×2": ("title2", nbsvm()),
        "nbsvm char13 title×3": ("title3", nbsvm()),
        "nbsvm char13 vocab+idf on pool": ("plain", nbsvm(True)),
        "lsa200 svc": ("plain", lsa(200, (0.5, 1.0))),
        "pseudo keep50% w0.3": ("plain", pseudo(0.5, 0.3)),
        "pseudo keep30% w1": ("plain", pseudo(0.3, 1.0)),
        "nbsvm + svc word12": ("plain", stack_word((0.25, 0.5))),
        "title×2 nbsvm + svc word12": ("title2", stack_word((0.25, 0.5))),
    }


def main() -> None:
    args = experiment_args("topic_semi")
    rows, classes, y = topic_rows()
    inputs = {"plain": [model_input(r["text"]) for r in rows]}
    for k in (1, 2, 3):
        inputs[f"title{k}"] = [model_input(with_title(r, k)) for r in rows]
    unlab = [model_input(t) for t in unlabelled_pool()]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(inputs["plain"], y))
    print(json.dumps({"rows": len(rows), "unlabelled_pool": len(unlab), "titled": sum(bool(r.get("title")) for r in rows)}))
    for name, (variant, run) in candidates().items():
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.perf_counter()
        texts = inputs[variant]
        scores: dict[str, np.ndarray] = {}
        for tr, te in folds:
            out = run(Fold([texts[i] for i in tr], y[tr], [texts[i] for i in te], len(classes), unlab))
            for sub, s in (out.items() if isinstance(out, dict) else [("", out)]):
                scores.setdefault(sub, np.zeros((len(texts), len(classes))))[te] = s
        for sub, s in scores.items():
            cv_report(args.out, f"{name} {sub}".strip(), y, s, folds, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
