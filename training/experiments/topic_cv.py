"""5-fold cross-validation of topic-head candidates on the 80% training portion of teddy2020 (train + dev).

    .venv/bin/python -m training.experiments.topic_cv [--only NAME ...] [--out var/experiments/topic_cv.jsonl]

The 20% test split (data/datasets/teddy/test.jsonl, `triage split --stratify label`) is never read here.
Candidates are plain scikit-learn models over the same `model_input()` text the served heads see
(normalised, segmented, space-joined). Out-of-fold probabilities are kept so that probability-averaging
ensembles of the members are scored on the same folds. One JSON line per candidate: mean macro-F1 over
the five folds, its standard deviation, and the pooled out-of-fold macro-F1.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from training.datasets import labelled, load_jsonl, model_input

ROOT = Path(__file__).resolve().parents[2]
SPLIT = ROOT / "data" / "datasets" / "teddy"
SEED = 20260301
TOKENS = r"[^ ]+"


def char_vec(lo: int, hi: int, sublinear: bool = False, min_df: int = 2, max_features: int | None = 100000) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char", ngram_range=(lo, hi), min_df=min_df, max_features=max_features,
                           sublinear_tf=sublinear, lowercase=False, dtype=np.float32)


def word_vec(lo: int, hi: int, sublinear: bool = False, min_df: int = 2, max_features: int | None = 50000) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="word", token_pattern=TOKENS, ngram_range=(lo, hi), min_df=min_df,
                           max_features=max_features, sublinear_tf=sublinear, lowercase=False, dtype=np.float32)


def features(vecs: list[TfidfVectorizer], tr: list[str], te: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    a = [v.fit_transform(tr) for v in vecs]
    b = [v.transform(te) for v in vecs]
    return sp.hstack(a).tocsr(), sp.hstack(b).tocsr()


def nb_ratio(X: sp.csr_matrix, y: np.ndarray, k: int, alpha: float = 1.0) -> np.ndarray:
    """Log-count ratio of class k vs the rest over binarised features (Wang & Manning 2012)."""
    B = (X > 0).astype(np.float64)
    p = np.asarray(B[y == k].sum(0)).ravel() + alpha
    q = np.asarray(B[y != k].sum(0)).ravel() + alpha
    return np.log((p / p.sum()) / (q / q.sum()))


def svc_scores(Xtr: sp.csr_matrix, y: np.ndarray, Xte: sp.csr_matrix, C: float) -> np.ndarray:
    return LinearSVC(C=C, class_weight="balanced", random_state=SEED).fit(Xtr, y).decision_function(Xte)


def lr_scores(Xtr: sp.csr_matrix, y: np.ndarray, Xte: sp.csr_matrix, C: float) -> np.ndarray:
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=3000)
    return np.log(np.clip(clf.fit(Xtr, y).predict_proba(Xte), 1e-12, None))


def nbsvm_scores(Xtr: sp.csr_matrix, y: np.ndarray, Xte: sp.csr_matrix, C: float, n: int) -> np.ndarray:
    out = np.zeros((Xte.shape[0], n))
    for k in range(n):
        r = sp.diags(nb_ratio(Xtr, y, k))
        clf = LinearSVC(C=C, class_weight="balanced", random_state=SEED).fit(Xtr @ r, (y == k).astype(int))
        out[:, k] = clf.decision_function(Xte @ r)
    return out


def cnb_scores(Xtr: sp.csr_matrix, y: np.ndarray, Xte: sp.csr_matrix, alpha: float) -> np.ndarray:
    return ComplementNB(alpha=alpha).fit(Xtr, y).predict_log_proba(Xte)


def fasttext_scores(tr: list[str], y: np.ndarray, te: list[str], n: int, ngrams: int = 2, epoch: int = 25,
                    lr: float = 0.5) -> np.ndarray:
    """fastText supervised over the same space-joined words (optional: the `fasttext` package, not a project dependency)."""
    import random
    import tempfile

    import fasttext  # type: ignore[import-not-found]

    lines = [f"__label__{k} {t}\n" for t, k in zip(tr, y, strict=True)]
    random.Random(SEED).shuffle(lines)  # fastText never shuffles its file; rows sorted by label spoil every epoch
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
        fh.writelines(lines)
    model = fasttext.train_supervised(fh.name, wordNgrams=ngrams, epoch=epoch, lr=lr, dim=100, minCount=1,
                                      thread=1, seed=SEED, verbose=0)
    Path(fh.name).unlink()
    return fasttext_log_proba(model, te, n)


def fasttext_log_proba(model: Any, te: list[str], n: int) -> np.ndarray:
    """[len(te), n] log-probabilities of a fastText model whose labels are `__label__<class index>`."""
    out = np.full((len(te), n), 1e-9)
    for i, t in enumerate(te):
        labs, ps = model.predict(t, k=n)
        for lab, p in zip(labs, ps, strict=True):
            out[i, int(lab.removeprefix("__label__"))] = p
    return np.log(out)


Scorer = Callable[[list[str], np.ndarray, list[str], int], np.ndarray]


def candidates() -> dict[str, Scorer]:
    def make(vecs: Callable[[], list[TfidfVectorizer]], model: str, C: float = 1.0) -> Scorer:
        def run(tr: list[str], y: np.ndarray, te: list[str], n: int) -> np.ndarray:
            Xtr, Xte = features(vecs(), tr, te)
            if model == "svc":
                return svc_scores(Xtr, y, Xte, C)
            if model == "lr":
                return lr_scores(Xtr, y, Xte, C)
            if model == "cnb":
                return cnb_scores(Xtr, y, Xte, C)
            return nbsvm_scores(Xtr, y, Xte, C, n)
        return run

    return {
        "nbsvm char13 (current)": make(lambda: [char_vec(1, 3)], "nbsvm"),
        "svc char13": make(lambda: [char_vec(1, 3)], "svc"),
        "svc char14 sub mf=None min_df=2": make(lambda: [char_vec(1, 4, True, 2, None)], "svc", 0.5),
        "svc char13+word12 sub": make(lambda: [char_vec(1, 3, True), word_vec(1, 2, True)], "svc", 0.5),
        "nbsvm char13+word12": make(lambda: [char_vec(1, 3), word_vec(1, 2)], "nbsvm", 0.5),
        "lr char13+word12 sub C=20": make(lambda: [char_vec(1, 3, True), word_vec(1, 2, True)], "lr", 20.0),
        "cnb char13+word12 a=0.1": make(lambda: [char_vec(1, 3, True), word_vec(1, 2, True)], "cnb", 0.1),
        "cnb word12 a=0.3": make(lambda: [word_vec(1, 2, True, 1, None)], "cnb", 0.3),
        "fasttext word bigrams": fasttext_scores,
        "fasttext word bigrams lr=1 epoch=100": partial(fasttext_scores, epoch=100, lr=1.0),
    }


def macro(y: np.ndarray, s: np.ndarray) -> float:
    return float(f1_score(y, s.argmax(1), average="macro"))


def experiment_args(name: str) -> argparse.Namespace:
    """`--only NAME` (repeatable: run the candidates whose name contains it) and `--out` (JSONL appended to)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "experiments" / f"{name}.jsonl")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return args


def topic_rows() -> tuple[list[dict[str, Any]], list[str], np.ndarray]:
    """The labelled rows of the 80% portion (train + dev), the sorted classes, and the class index of each row."""
    rows, labels = labelled([r for f in ("train", "dev") for r in load_jsonl(SPLIT / f"{f}.jsonl").rows], "label")
    classes = sorted(set(labels))
    return rows, classes, np.array([classes.index(v) for v in labels])


def cv_report(out: Path, name: str, y: np.ndarray, scores: np.ndarray, folds: list[Any], seconds: float) -> dict[str, Any]:
    """Mean and sd of the per-fold macro-F1 and the pooled out-of-fold macro-F1; printed and appended to `out`."""
    per = [macro(y[te], scores[te]) for _, te in folds]
    row = {"candidate": name, "cv_macro_f1": round(float(np.mean(per)), 4), "std": round(float(np.std(per)), 4),
           "oof_macro_f1": round(macro(y, scores), 4), "seconds": round(seconds, 1)}
    print(json.dumps(row, ensure_ascii=False), flush=True)
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return row


def main() -> None:
    args = experiment_args("topic_cv")
    rows, classes, y = topic_rows()
    texts = [model_input(r["text"]) for r in rows]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(texts, y))
    oof: dict[str, np.ndarray] = {}
    results: list[dict[str, Any]] = []

    def report(name: str, scores: np.ndarray, seconds: float) -> None:
        results.append(cv_report(args.out, name, y, scores, folds, seconds))

    for name, run in candidates().items():
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.perf_counter()
        scores = np.zeros((len(texts), len(classes)))
        for tr, te in folds:
            scores[te] = run([texts[i] for i in tr], y[tr], [texts[i] for i in te], len(classes))
        oof[name] = scores
        report(name, scores, time.perf_counter() - t0)
    # Probability-averaging ensembles: per-member temperature so that scores on different scales mix.
    names = list(oof)
    probs = {n: softmax(oof[n] / max(np.std(oof[n]), 1e-9), axis=1) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            report(f"avg[{a} | {b}]", (probs[a] + probs[b]) / 2, 0.0)
    if len(names) > 2:
        report("avg[all]", sum(probs.values()) / len(names), 0.0)
    best = max(results, key=lambda r: r["cv_macro_f1"])
    print(json.dumps({"best": best}, ensure_ascii=False))


if __name__ == "__main__":
    main()
