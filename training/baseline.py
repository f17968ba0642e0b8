"""Linear text heads: TF-IDF members → weighted sum of linear scores → calibrated softmax.

`LinearTextHead` follows scikit-learn conventions (fit returns self; learned state ends in `_`).
After `fit`, `to_pipeline()` returns a plain `Pipeline(FeatureUnion(TfidfVectorizer…),
LogisticRegression)` whose coefficients already contain the member weights and the calibration,
so the exported ONNX graph computes exactly the calibrated probabilities.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from training.config import CalibrationConfig, MemberConfig, TrainConfig

logger = logging.getLogger(__name__)

WORD_TOKEN_PATTERN = r"[^ ]+"  # the input is segment() words joined by single spaces


def make_vectorizer(m: MemberConfig) -> TfidfVectorizer:
    """A TF-IDF vectoriser that skl2onnx converts exactly (no sublinear tf, no lowercase, no char_wb)."""
    common: dict[str, Any] = {
        "ngram_range": (m.ngram_min, m.ngram_max), "min_df": m.min_df, "max_features": m.max_features,
        "binary": m.binary, "lowercase": False, "dtype": np.float32,
    }
    if m.analyzer == "word":
        return TfidfVectorizer(analyzer="word", token_pattern=WORD_TOKEN_PATTERN, **common)
    return TfidfVectorizer(analyzer="char", **common)


def close_vocabulary(vec: TfidfVectorizer) -> int:
    """Drop n-grams whose parts are not themselves in the vocabulary; return how many were dropped.

    The ONNX TfIdfVectorizer builds n-grams from vocabulary tokens, so `max_features` pruning
    that keeps "ab" but drops "b" would make the converter fail.
    """
    vocab: dict[str, int] = vec.vocabulary_
    if vec.analyzer == "char":
        def parts(g: str) -> list[str]:
            return list(g)
    else:
        def parts(g: str) -> list[str]:
            return g.split(" ")
    keep = sorted((i, g) for g, i in vocab.items() if all(p in vocab for p in parts(g)))
    dropped = len(vocab) - len(keep)
    if dropped:
        old_idf = vec.idf_
        vec.vocabulary_ = {g: new for new, (_, g) in enumerate(keep)}
        vec.idf_ = old_idf[[i for i, _ in keep]]
        vec._tfidf.n_features_in_ = len(keep)  # keep the inner transformer's shape check consistent
    return dropped


class NBSVMClassifier:
    """One-vs-rest linear SVMs on naive-Bayes-scaled features (Wang & Manning 2012, NBSVM).

    For class c, r_c = log((α + Σ x>0 | c) / ‖·‖₁ ÷ (α + Σ x>0 | not c) / ‖·‖₁) scales the features
    before a binary LinearSVC; the scaling is folded into `coef_` (w_c ⊙ r_c), so the fitted model
    is an ordinary linear model over the unscaled features and exports like any other.
    """

    def __init__(self, C: float = 1.0, alpha: float = 1.0, class_weight: str | None = "balanced", seed: int = 0) -> None:
        self.C = C
        self.alpha = alpha
        self.class_weight = class_weight
        self.seed = seed

    def fit(self, X: sp.csr_matrix, y: npt.NDArray[Any], sample_weight: npt.NDArray[Any] | None = None) -> NBSVMClassifier:
        y = np.asarray(y, dtype=object)
        w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.classes_ = np.array(sorted(set(y)), dtype=object)
        Xb = (X > 0).astype(np.float32).tocsr()
        coefs, intercepts = [], []
        for c in self.classes_:
            pos = y == c
            p = self.alpha + np.asarray(Xb[pos].T @ w[pos]).ravel()
            q = self.alpha + np.asarray(Xb[~pos].T @ w[~pos]).ravel()
            r = np.log((p / p.sum()) / (q / q.sum()))
            svc = LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.seed, max_iter=5000)
            svc.fit(X.multiply(r).tocsr(), pos.astype(int), sample_weight=sample_weight)
            coefs.append(svc.coef_.ravel() * r)
            intercepts.append(float(svc.intercept_[0]))
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.asarray(intercepts)
        return self

    def decision_function(self, X: sp.csr_matrix) -> npt.NDArray[np.float64]:
        return np.asarray(X @ self.coef_.T) + self.intercept_


def make_classifier(m: MemberConfig, class_weight: str | None, seed: int) -> Any:
    if m.classifier == "nbsvm":
        return NBSVMClassifier(C=m.C, alpha=m.nb_alpha, class_weight=class_weight, seed=seed)
    if m.classifier == "svc":
        return LinearSVC(C=m.C, class_weight=class_weight, random_state=seed, max_iter=5000)
    if m.classifier == "lr":
        return LogisticRegression(C=m.C, class_weight=class_weight, max_iter=5000)
    return SGDClassifier(loss="modified_huber", alpha=m.alpha, class_weight=class_weight, max_iter=100,
                         tol=1e-4, random_state=seed)


def augment_domains(X: sp.csr_matrix, target: npt.NDArray[np.bool_]) -> sp.csr_matrix:
    """Feature augmentation for domain adaptation (Daumé III 2007, "Frustratingly easy domain adaptation").

    Row x of the source domain becomes [x, x, 0], of the target domain [x, 0, x]: a linear model learns a shared
    weight per feature and a per-domain correction, so the few target rows can move the weights where the domains
    differ without being outvoted by the many source rows, and the source rows still teach what the domains share.
    """
    src = sp.diags((~target).astype(X.dtype)) @ X
    tgt = sp.diags(target.astype(X.dtype)) @ X
    return sp.hstack([X, src, tgt], format="csr")


class TargetView:
    """A linear classifier fitted on `augment_domains` features, seen as a model of the target domain: the
    shared + target weights over the original features (source corrections dropped)."""

    def __init__(self, clf: Any, n_features: int) -> None:
        coef = np.asarray(clf.coef_, dtype=np.float64)
        if coef.shape[1] != 3 * n_features:
            raise ValueError(f"expected {3 * n_features} augmented features, the classifier has {coef.shape[1]}")
        self.coef_ = coef[:, :n_features] + coef[:, 2 * n_features:]
        self.intercept_ = np.atleast_1d(np.asarray(clf.intercept_, dtype=np.float64))
        self.classes_ = clf.classes_

    def decision_function(self, X: sp.csr_matrix) -> npt.NDArray[np.float64]:
        raw = np.asarray(X @ self.coef_.T) + self.intercept_
        return raw[:, 0] if raw.shape[1] == 1 else raw


def _scores_full(clf: Any, X: sp.csr_matrix, classes: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Decision scores as an [N, K] matrix over all `classes` (K ≥ 2), missing classes very low."""
    raw = np.asarray(clf.decision_function(X), dtype=np.float64)
    fitted = list(clf.classes_)
    if raw.ndim == 1:  # binary: one score for fitted[1]
        raw = np.stack([-raw / 2, raw / 2], axis=1)
    out = np.full((X.shape[0], len(classes)), np.nan)
    for j, c in enumerate(classes):
        if c in fitted:
            out[:, j] = raw[:, fitted.index(c)]
    low = np.nanmin(out, axis=1, keepdims=True) - 5.0
    return np.where(np.isnan(out), low, out)


def expected_calibration_error(proba: npt.NDArray[Any], y_idx: npt.NDArray[Any], bins: int = 15) -> float:
    """Top-label ECE: |accuracy − confidence| averaged over equal-width confidence bins."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_idx
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def fit_calibration(scores: npt.NDArray[Any], y_idx: npt.NDArray[Any], cfg: CalibrationConfig,
                    row_weight: npt.NDArray[Any] | None = None) -> tuple[float, npt.NDArray[Any]]:
    """Temperature T and class biases b minimising the (row-weighted mean) NLL of softmax(scores / T + b)."""
    k = scores.shape[1]
    w = np.ones(len(y_idx)) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
    if w.shape != (len(y_idx),) or not np.all(w >= 0) or w.sum() <= 0:
        raise ValueError(f"calibration row weights: expected {len(y_idx)} non-negative weights with a positive sum")
    w = w / w.sum()
    if cfg.method == "none":
        return 1.0, np.zeros(k)
    use_bias = cfg.method == "temperature_bias"

    def nll(params: npt.NDArray[Any]) -> float:
        t = np.exp(params[0])
        b = params[1:] if use_bias else 0.0
        lp = log_softmax(scores / t + b, axis=1)
        loss = -float(w @ lp[np.arange(len(y_idx)), y_idx])
        if use_bias:
            loss += cfg.bias_l2 * float(np.sum(params[1:] ** 2))
        return float(loss)

    x0 = np.zeros(1 + (k if use_bias else 0))
    res = minimize(nll, x0, method="L-BFGS-B")
    t = float(np.exp(res.x[0]))
    b = res.x[1:] - res.x[1:].mean() if use_bias else np.zeros(k)
    return t, b


@dataclass
class FittedMember:
    config: MemberConfig
    vectorizer: TfidfVectorizer
    coef: npt.NDArray[np.float64]  # [K, F] over the head's classes
    intercept: npt.NDArray[np.float64]  # [K]


class LinearTextHead:
    """One head: fit on segmented texts (`triage.text.segmented_text`) and string labels."""

    def __init__(self, members: list[MemberConfig], config: TrainConfig,
                 vectorizers: dict[int, TfidfVectorizer] | None = None) -> None:
        """`vectorizers`: already fitted (and closed) vectorisers by member index, used as they are."""
        self.members = members
        self.config = config
        self.prefitted = vectorizers or {}

    # -- fitting ----------------------------------------------------------------------------

    def _class_weight(self) -> str | None:
        return "balanced" if self.config.class_weight == "balanced" else None

    def _fit_scores(self, mats: list[sp.csr_matrix], y: npt.NDArray[Any], train: npt.NDArray[Any],
                    evals: npt.NDArray[Any] | None) -> tuple[list[Any], npt.NDArray[Any] | None]:
        clfs, total = [], None
        sw = None if self.sample_weight_ is None else self.sample_weight_[train]
        for m, X in zip(self.members, mats, strict=True):
            if self.target_ is None:
                clf = make_classifier(m, self._class_weight(), self.config.seed).fit(X[train], y[train], sample_weight=sw)
            else:
                X_aug = augment_domains(X[train], self.target_[train])
                fitted = make_classifier(m, self._class_weight(), self.config.seed).fit(X_aug, y[train], sample_weight=sw)
                clf = TargetView(fitted, X.shape[1])
            clfs.append(clf)
            if evals is not None:
                s = m.weight * _scores_full(clf, X[evals], self.classes_)
                total = s if total is None else total + s
        return clfs, total

    def fit(self, texts: list[str], labels: list[str], sample_weight: list[float] | None = None,
            target: list[bool] | None = None, calibration_weight: list[float] | None = None,
            origin: list[int] | None = None) -> LinearTextHead:
        """`sample_weight`: per-row weight (e.g. a data file's weight from `data_weights`), default 1.

        `calibration_weight`: per-row weight in the calibration fit (`CalibrationConfig.domain_weights`), default 1.

        `origin`: per row, -1 for an ordinary row, or the index of the row it derives from for an auxiliary row
        (the same text with another label: a labeller's second choice, `second_choice_rows`). Auxiliary rows train
        the classifiers but are never scored for calibration, and in the calibration's cross-fitting they sit in
        the training part exactly when their origin does (their text never leaks into the scores of its origin).

        `target`: per-row domain for feature augmentation (`augment_domains`; True: the served kind of text). The
        fitted head is then an ordinary linear model with the shared + target weights (`TargetView`): what it
        predicts, calibrates on and exports is the target-domain model. None: no adaptation.
        """
        t0 = time.perf_counter()
        self.sample_weight_ = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.target_ = None if target is None else np.asarray(target, dtype=bool)
        if self.target_ is not None and len(self.target_) != len(texts):
            raise ValueError(f"target has {len(self.target_)} entries for {len(texts)} texts")
        orig = np.full(len(texts), -1, dtype=np.int64) if origin is None else np.asarray(origin, dtype=np.int64)
        if orig.shape != (len(texts),):
            raise ValueError(f"origin has {orig.size} entries for {len(texts)} texts")
        primary = np.flatnonzero(orig < 0)
        aux = np.flatnonzero(orig >= 0)
        if aux.size and (np.any(orig[aux] >= len(texts)) or np.any(orig[orig[aux]] >= 0)):
            raise ValueError("origin must point auxiliary rows at ordinary rows")
        y = np.asarray(labels, dtype=object)
        self.classes_ = np.array(sorted(set(labels)), dtype=object)
        if len(self.classes_) < 2:
            raise ValueError("a head needs at least two classes in its training data")
        y_idx = np.searchsorted(self.classes_, y)
        vecs = [self.prefitted[i] if i in self.prefitted else make_vectorizer(m) for i, m in enumerate(self.members)]
        mats = []
        for i, (m, v) in enumerate(zip(self.members, vecs, strict=True)):
            if i in self.prefitted:
                mats.append(v.transform(texts).tocsr())
                logger.info("member %s: %d features (shared vectoriser)", m.name, len(v.vocabulary_))
                continue
            v.fit(texts)
            dropped = close_vocabulary(v)
            mats.append(v.transform(texts).tocsr())
            logger.info("member %s: %d features (%d n-grams dropped to close the vocabulary)",
                        m.name, len(v.vocabulary_), dropped)
        all_rows = np.arange(len(texts))
        clfs, _ = self._fit_scores(mats, y, all_rows, None)
        # Out-of-fold scores for calibration (vectorisers are shared: a small optimism in idf only).
        cal = self.config.calibration
        counts = np.bincount(y_idx[primary], minlength=len(self.classes_))
        folds = min(cal.folds, int(counts.max()))
        self.oof_scores_ = np.zeros((len(primary), len(self.classes_)))  # scores of the ordinary rows, in order
        if cal.method != "none" and folds >= 2:
            skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.config.seed)
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The least populated class")
                splits = list(skf.split(np.zeros(len(primary)), y_idx[primary]))
            for tr, te in splits:
                tr_rows = primary[tr]
                if aux.size:  # auxiliary rows follow their origin into the training part
                    tr_rows = np.sort(np.concatenate([tr_rows, aux[np.isin(orig[aux], tr_rows)]]))
                _, s = self._fit_scores(mats, y, tr_rows, primary[te])
                self.oof_scores_[te] = s
            cal_w = None if calibration_weight is None else np.asarray(calibration_weight, dtype=np.float64)[primary]
            self.temperature_, self.bias_ = fit_calibration(self.oof_scores_, y_idx[primary], cal, cal_w)
        else:
            self.temperature_, self.bias_ = 1.0, np.zeros(len(self.classes_))
        self.members_ = []
        for m, v, clf in zip(self.members, vecs, clfs, strict=True):
            coef, intercept = self._full_coef(clf)
            self.members_.append(FittedMember(m, v, m.weight * coef, m.weight * intercept))
        logger.info("head fitted: %d rows, %d classes, T=%.3f in %.1fs", len(texts), len(self.classes_),
                    self.temperature_, time.perf_counter() - t0)
        return self

    def _full_coef(self, clf: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        coef = np.asarray(clf.coef_, dtype=np.float64)
        intercept = np.atleast_1d(np.asarray(clf.intercept_, dtype=np.float64))
        fitted = list(clf.classes_)
        if coef.shape[0] == 1:  # binary: score s for fitted[1] → [-s/2, s/2]
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        full_c = np.zeros((len(self.classes_), coef.shape[1]))
        full_i = np.full(len(self.classes_), -5.0)
        for j, c in enumerate(self.classes_):
            if c in fitted:
                full_c[j] = coef[fitted.index(c)]
                full_i[j] = intercept[fitted.index(c)]
        return full_c, full_i

    # -- prediction -------------------------------------------------------------------------

    def decision_function(self, texts: list[str]) -> npt.NDArray[np.float64]:
        """Calibrated logits: (Σ member scores) / T + b."""
        total = np.zeros((len(texts), len(self.classes_)))
        for fm in self.members_:
            X = fm.vectorizer.transform(texts)
            total += np.asarray(X @ fm.coef.T) + fm.intercept
        return total / self.temperature_ + self.bias_

    def predict_proba(self, texts: list[str]) -> npt.NDArray[np.float64]:
        return softmax(self.decision_function(texts), axis=1)

    def predict(self, texts: list[str]) -> npt.NDArray[Any]:
        return self.classes_[self.decision_function(texts).argmax(axis=1)]

    # -- export -----------------------------------------------------------------------------

    def to_pipeline(self) -> Pipeline:
        """A FeatureUnion → LogisticRegression pipeline computing the same calibrated probabilities."""
        union = FeatureUnion([(fm.config.name, fm.vectorizer) for fm in self.members_])
        coef = np.hstack([fm.coef for fm in self.members_]) / self.temperature_
        intercept = sum(fm.intercept for fm in self.members_) / self.temperature_ + self.bias_
        lr = LogisticRegression()
        lr.classes_ = self.classes_.copy()
        if len(self.classes_) == 2:  # binary LR: p1 = sigmoid(z1 - z0)
            lr.coef_ = (coef[1] - coef[0])[None, :]
            lr.intercept_ = np.array([intercept[1] - intercept[0]])
        else:
            lr.coef_ = coef
            lr.intercept_ = np.asarray(intercept)
        lr.n_features_in_ = coef.shape[1]
        lr.n_iter_ = np.array([0])
        return Pipeline([("features", union), ("clf", lr)])

    @property
    def n_features_(self) -> int:
        return sum(len(fm.vectorizer.vocabulary_) for fm in self.members_)
