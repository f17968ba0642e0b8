"""Hotspots on the real hot messages: threshold of the same-issue model, and its evaluation.

Data (../shared/data/public + data/corpus/real): 1,945 hot messages; contestants' silver same-issue
groups (341) and pairs (1,938, each with the teams that grouped it); 619 pairs read by a labeller
(`hot_pairs_verified.jsonl`: 265 same, 354 related/different).

* Model (`fit_issue_model`, called by `triage train-linker`): the same-issue logistic regression
  over context-free pair features, fitted on a development set that excludes every read pair —
  positives: silver pairs grouped by ≥ 3 teams (every such pair that was read turned out to be the
  same matter); negatives: 400 sampled messages' 5 nearest neighbours, and for 400 more two
  messages posted within 7 days, that no team grouped with them. Platt scaling and the best-F1
  threshold come from 5-fold out-of-fold margins.
* Evaluation (`evaluate_hotspots`): all hot messages in a MemoryCaseIndex, grouped into issues by
  triage.linking.hotspots; pairwise precision/recall of "same issue" = "same predicted group"
  against the read pairs (primary) and against all silver pairs (secondary; the silver pairs used
  for the threshold are among them, so this figure is not held out).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from training.linking import CACHE, PUBLIC, Prepared, make_extractor, prepare, read_jsonl
from training.linking_real import VERIFIED

logger = logging.getLogger(__name__)


def _hot(public_dir: Path, ner: bool) -> Prepared:
    return prepare(read_jsonl(public_dir / "teddy2020_hot_messages.jsonl"), make_extractor(ner), CACHE / "entities-hot.jsonl")


def _snapshots(prep: Prepared) -> list[Any]:
    from triage.linking.index import CaseSnapshot

    return [CaseSnapshot(case_id=p.id, text=p.text, entities=e, submitted_at=p.submitted_at, district=e.place.district,
                         subdivision=e.place.subdivision) for p, e in zip(prep.petitions, prep.entities, strict=True)]


def development_pairs(prep: Prepared, encoder: Any, public_dir: Path = PUBLIC,
                      seed: int = 0) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(pairs, labels) for the issue threshold; no read pair is among them."""
    read = {frozenset((str(r["a"]), str(r["b"]))) for r in read_jsonl(VERIFIED)}
    ids = [p.id for p in prep.petitions]
    known = set(ids)
    group_of: dict[str, set[tuple[str, str]]] = {}
    for g in read_jsonl(public_dir / "teddy2020_hot_silver_groups.jsonl"):
        for i in g["ids"]:
            group_of.setdefault(str(i), set()).add((g["team"], str(g["group"])))
    pos = [(str(r["a"]), str(r["b"])) for r in read_jsonl(public_dir / "teddy2020_hot_silver_pairs.jsonl")
           if len(r["teams"]) >= 3 and frozenset((str(r["a"]), str(r["b"]))) not in read
           and str(r["a"]) in known and str(r["b"]) in known]
    emb = encoder.encode([p.text for p in prep.petitions])
    rng = random.Random(seed)
    neg: list[tuple[str, str]] = []
    for i in rng.sample(range(len(ids)), min(400, len(ids))):
        sims = emb @ emb[i]
        for j in np.argsort(-sims)[1:6]:
            a, b = ids[i], ids[int(j)]
            if not group_of.get(a, set()) & group_of.get(b, set()) and frozenset((a, b)) not in read:
                neg.append((a, b))
    # Messages posted within a week of each other that no team grouped: without them the model
    # learns "posted close in time" as "same issue" (silver groups are bursts of posts).
    times = [p.submitted_at for p in prep.petitions]
    for i in rng.sample(range(len(ids)), min(400, len(ids))):
        near = [j for j in range(len(ids)) if j != i and times[i] and times[j] and abs((times[i] - times[j]).days) <= 7]
        for j in rng.sample(near, min(2, len(near))):
            a, b = ids[i], ids[j]
            if not group_of.get(a, set()) & group_of.get(b, set()) and frozenset((a, b)) not in read:
                neg.append((a, b))
    return pos + neg, np.asarray([1] * len(pos) + [0] * len(neg))


def pair_probs(model: Any, encoder: Any, prep: Prepared, pairs: list[tuple[str, str]]) -> np.ndarray:
    from triage.linking.verifier import pair_features, view_of

    pos = prep.by_id()
    views: dict[str, Any] = {}

    def v(i: str) -> Any:
        if i not in views:
            p, e = prep.petitions[pos[i]], prep.entities[pos[i]]
            views[i] = view_of(p.text, e, encoder, submitted_at=p.submitted_at)
        return views[i]

    return model.probability(model.matrix([pair_features(v(a), v(b)) for a, b in pairs]))


def fit_issue_model(encoder: Any, *, c: float, version: str, public_dir: Path = PUBLIC, ner: bool = True,
                    folds: int = 5) -> Any:
    """Same-issue model fitted on the development pairs; Platt scaling and best-F1 threshold out of fold."""
    from training.linking import Pairs, fit_verifier, platt_fit
    from triage.linking.verifier import ISSUE_FEATURES, pair_features, view_of

    prep = _hot(public_dir, ner)
    pairs, labels = development_pairs(prep, encoder, public_dir)
    views = {p.id: view_of(p.text, e, encoder, submitted_at=p.submitted_at) for p, e in zip(prep.petitions, prep.entities,
                                                                                              strict=True)}
    feats = [pair_features(views[a], views[b]) for a, b in pairs]
    data = Pairs([a for a, _ in pairs], [b for _, b in pairs], feats, labels)
    # folds by the smaller message id, so a message's pairs mostly stay in one fold
    fold = np.asarray([hash_fold(min(a, b), folds) for a, b in pairs])
    margin = np.zeros(len(pairs))
    for k in range(folds):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        sub = Pairs([data.query[i] for i in tr], [data.candidate[i] for i in tr], [feats[i] for i in tr], labels[tr])
        m = fit_verifier(sub, c=c, features=ISSUE_FEATURES)
        margin[te] = m.margin(m.matrix([feats[i] for i in te]))
    a, b = platt_fit(margin, labels)
    probs = 1.0 / (1.0 + np.exp(-(a * margin + b)))
    threshold, f1 = best_f1_threshold(probs, labels)
    logger.info("issue model: out-of-fold F1 %.3f at threshold %.2f on %d development pairs (%d positive)", f1, threshold,
                len(pairs), int(labels.sum()))
    model = fit_verifier(data, c=c, version=version, features=ISSUE_FEATURES)
    return type(model)(**{**model.__dict__, "platt_a": a, "platt_b": b, "threshold": threshold})


def hash_fold(key: str, folds: int) -> int:
    import hashlib

    return hashlib.sha256(key.encode()).digest()[0] % folds


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    best = (0.5, 0.0)
    for t in np.arange(0.05, 0.96, 0.01):
        pred = probs >= t
        tp = int((pred & (labels == 1)).sum())
        fp = int((pred & (labels == 0)).sum())
        fn = int((~pred & (labels == 1)).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best[1]:
            best = (round(float(t), 2), f1)
    return best


def evaluate_hotspots(model_dir: Path, *, public_dir: Path = PUBLIC, ner: bool = True) -> dict[str, Any]:
    """Group all hot messages into issues; pairwise precision/recall against read and silver pairs."""
    from triage.linking.hotspots import load_hotspot_finder
    from triage.linking.memory import MemoryCaseIndex

    prep = _hot(public_dir, ner)
    finder = load_hotspot_finder(model_dir)
    index = MemoryCaseIndex()
    snaps = _snapshots(prep)
    for s, f in zip(snaps, finder.featurizer.features_many([s.text for s in snaps]), strict=True):
        index.add(s, f)
    issues = finder.issues(snaps, index)
    cluster = {cid: n for n, iss in enumerate(issues) for cid in iss.case_ids}

    def together(a: str, b: str) -> bool:
        return a in cluster and cluster.get(a) == cluster.get(b)

    read = read_jsonl(VERIFIED)
    y = np.asarray([r["verdict"] == "same" for r in read])
    pred = np.asarray([together(str(r["a"]), str(r["b"])) for r in read])
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    silver = read_jsonl(public_dir / "teddy2020_hot_silver_pairs.jsonl")
    silver_set = {frozenset((str(r["a"]), str(r["b"]))) for r in silver}
    in_groups = {str(i) for g in read_jsonl(public_dir / "teddy2020_hot_silver_groups.jsonl") for i in g["ids"]}
    s_tp = sum(1 for p in silver_set if together(*sorted(p)))
    predicted_pairs = 0
    for iss in issues:
        m = [c for c in iss.case_ids if c in in_groups]
        predicted_pairs += len(m) * (len(m) - 1) // 2
    return {
        "messages": len(snaps), "issues": len(issues), "threshold": finder.model.threshold,
        "largest": [{"count": i.count, "keywords": i.keywords, "weeks": len(i.weekly), "trend": i.trend} for i in issues[:5]],
        "read_pairs": {"precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
                       "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0, "tp": tp, "fp": fp, "fn": fn,
                       "same": int(y.sum()), "not_same": int((~y).sum())},
        "silver_pairs": {"precision": round(s_tp / predicted_pairs, 4) if predicted_pairs else 0.0,
                         "recall": round(s_tp / len(silver_set), 4), "silver": len(silver_set),
                         "predicted_pairs_among_grouped_messages": predicted_pairs},
    }
