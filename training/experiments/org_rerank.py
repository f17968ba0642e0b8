"""Span reranking over the organisation CRF's marginals, measured out-of-fold (issue 6 experiment).

    .venv/bin/python -m training.experiments.org_rerank --taggers var/taggers/base [--json var/oof/rerank.json]

Reads the five fold taggers `training.experiments.org_oof --states --save-taggers DIR` saved (each fitted on the
other folds of written train+dev). For every held-out record: the CRF's span marginals by forward-backward per decode
chunk; every span with marginal ≥ --min-p is a candidate, labelled by exact match with a gold organisation span.
A logistic regression over span features (the marginal, whether Viterbi chose it, head/first characters, context,
word boundaries, candidate channels, the fold tagger's lexicon, LAC encoder states pooled over the span) is fitted
on the other folds' candidates and picks non-overlapping spans greedily on the held-out fold. Scored at the tagger's
output (before the extractor's trim/convention/short-name rules) against the deduplicated gold spans, Viterbi in the
same run as the baseline. The test split is never read.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression

from training.experiments.org_oof import emit, f1, outer_fold
from training.orgs import Example, load_examples
from triage.entities import EntityExtractor
from triage.orgs import _ALLOWED, _B, _E, _END_OK, _I, _S, _START_OK, OrgTagger, tags_to_spans
from triage.taxonomy import load_taxonomy


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def span_marginals(em: np.ndarray, trans: np.ndarray, max_len: int = 30) -> dict[tuple[int, int], float]:
    """log P(span is one BIOES entity) for all spans of one chunk (emissions em: (m, 5)), length ≤ max_len."""
    em = em.astype(np.float64)
    tr = np.where(_ALLOWED, trans.astype(np.float64), -1e4)  # BIOES: disallowed bigrams never
    m = len(em)
    start = np.where(_START_OK, 0.0, -1e4)
    end = np.where(_END_OK, 0.0, -1e4)
    alpha = np.empty((m, 5))
    beta = np.empty((m, 5))
    alpha[0] = em[0] + start
    for t in range(1, m):
        alpha[t] = _lse(alpha[t - 1][:, None] + tr, 0) + em[t]
    beta[m - 1] = end
    for t in range(m - 2, -1, -1):
        beta[t] = _lse(tr + (em[t + 1] + beta[t + 1])[None, :], 1)
    log_z = float(_lse(alpha[m - 1] + beta[m - 1], 0))
    out: dict[tuple[int, int], float] = {}
    inner = np.concatenate([[0.0], np.cumsum(em[:, _I])])  # inner[j] - inner[i]: I emissions of i..j-1
    for s in range(m):
        out[(s, s + 1)] = alpha[s, _S] + beta[s, _S] - log_z
        for e in range(s + 2, min(m, s + max_len) + 1):
            n_inner = e - s - 2
            path = alpha[s, _B] + em[e - 1, _E] + beta[e - 1, _E]
            if n_inner == 0:
                path += tr[_B, _E]
            else:
                path += tr[_B, _I] + (n_inner - 1) * tr[_I, _I] + tr[_I, _E] + inner[e - 1] - inner[s + 1]
            out[(s, e)] = path - log_z
    return out


def _bucket(x: float, edges: tuple[float, ...]) -> int:
    return sum(x >= t for t in edges)


def candidates(tagger: OrgTagger, x: Example, min_p: float
               ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[float], np.ndarray]:
    em = tagger.text_emissions(x.text, x.words, x.marks)
    if tagger.state_layer is not None:
        em = em + tagger.state_layer.emissions(x.states)
    chunks = tagger.chunks(x.text, decoding=True)
    viterbi = tags_to_spans(tagger.decode(em, chunks))
    cands, logps = [], []
    for a, b in chunks:
        for (s, e), lp in span_marginals(em[a:b], tagger.transitions_).items():
            if lp >= math.log(min_p):
                cands.append((a + s, a + e))
                logps.append(lp)
    return viterbi, cands, logps, em


def span_features(x: Example, tagger: OrgTagger, cands: list[tuple[int, int]], logps: list[float],
                  viterbi: set[tuple[int, int]]) -> tuple[list[dict[str, float]], np.ndarray]:
    text = x.text
    starts = {s for s, _, _ in x.words}
    ends = {e for _, e, _ in x.words}
    word_at = {}
    for s, e, lab in x.words:
        for i in range(s, e):
            word_at[i] = lab
    chan = {ch: set(map(tuple, spans)) for ch, spans in x.marks.items()}
    chan_starts = {ch: {s for s, _ in v} for ch, v in chan.items()}
    chan_ends = {ch: {e for _, e in v} for ch, v in chan.items()}
    lex = tagger.lexicon.names
    vtexts = Counter(text[s:e] for s, e in viterbi)
    feats, dense = [], []
    st = x.states
    cum = np.concatenate([np.zeros((1, st.shape[1]), dtype=np.float64), np.cumsum(st, axis=0, dtype=np.float64)])
    for (s, e), lp in zip(cands, logps, strict=True):
        name = text[s:e]
        p = math.exp(lp)
        f: dict[str, float] = {
            "bias": 1.0,
            f"pb={_bucket(p, (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98))}": 1.0,
            f"vit={int((s, e) in viterbi)}": 1.0,
            f"len={min(e - s, 16)}": 1.0,
            f"h1={name[-1]}": 1.0, f"h2={name[-2:]}": 1.0, f"h3={name[-3:]}": 1.0,
            f"f1={name[0]}": 1.0, f"f2={name[:2]}": 1.0,
            f"pc={text[s - 1] if s else '^'}": 1.0, f"nc={text[e] if e < len(text) else '$'}": 1.0,
            f"pc2={text[max(0, s - 2):s]}": 1.0, f"nc2={text[e:e + 2]}": 1.0,
            f"wb={int(s in starts)}{int(e in ends)}": 1.0,
            f"wl={word_at.get(s, '-')}|{word_at.get(e - 1, '-')}": 1.0,
            f"wprev={word_at.get(s - 1, '-')}": 1.0, f"wnext={word_at.get(e, '-')}": 1.0,
            f"lex={lex.get(name, 0)}": 1.0,
            f"vitsame={min(vtexts.get(name, 0), 3)}{int((s, e) in viterbi)}": 1.0,
            f"rep={min(text.count(name), 4)}": 1.0,
        }
        for ch in chan:
            f[f"ch={ch}:{int((s, e) in chan[ch])}{int(s in chan_starts[ch])}{int(e in chan_ends[ch])}"] = 1.0
        feats.append(f)
        mean = (cum[e] - cum[s]) / (e - s)
        dense.append(np.concatenate([[lp, math.log1p(-min(p, 1 - 1e-9))], mean, st[s], st[e - 1]]))
    width = 2 + 3 * st.shape[1]
    return feats, np.array(dense, dtype=np.float64).reshape(len(cands), width)


def pick(cands: list[tuple[int, int]], q: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    chosen: list[tuple[int, int]] = []
    for i in np.argsort(-q, kind="stable"):
        if q[i] < threshold:
            break
        s, e = cands[i]
        if not any(a < e and s < b for a, b in chosen):
            chosen.append((s, e))
    return sorted(chosen)


def counts(pred: list[tuple[int, int]], gold: list[tuple[int, int]]) -> tuple[int, int, int]:
    p, g = set(pred), set(gold)
    return len(p & g), len(p - g), len(g - p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--taggers", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--min-p", type=float, default=0.01)
    ap.add_argument("--c", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    ap.add_argument("--no-states", action="store_true", help="leave the pooled encoder states out")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--limit", type=int, help="only the first N records of each fold (a smoke run)")
    args = ap.parse_args()
    from serving.ner import LacTagger

    taxonomy = load_taxonomy()
    lac = LacTagger()
    rules = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(), org_tagger=None)
    examples = load_examples("train", rules, lac, True) + load_examples("dev", rules, lac, True)
    hasher = FeatureHasher(n_features=1 << 18, alternate_sign=False)
    per_fold: dict[int, dict[str, Any]] = {}
    for k in range(args.folds):
        tagger = OrgTagger.load(args.taggers / f"fold{k}-of{args.folds}.npz")
        rows = []
        for x in [x for x in examples if outer_fold(x.group, args.folds) == k][:args.limit]:
            vit, cands, logps, _ = candidates(tagger, x, args.min_p)
            feats, dense = span_features(x, tagger, cands, logps, set(vit))
            gold = set(x.gold)
            rows.append({"gold": x.gold, "viterbi": vit, "cands": cands, "feats": feats, "dense": dense,
                         "y": np.array([c in gold for c in cands], dtype=np.int8)})
        per_fold[k] = {"rows": rows}
        n_c = sum(len(r["cands"]) for r in rows)
        recall_ceiling = sum(int(r["y"].sum()) for r in rows) / max(1, sum(len(r["gold"]) for r in rows))
        print(f"fold {k}: {len(rows)} records, {n_c} candidates, gold reachable {recall_ceiling:.3f}", file=sys.stderr,
              flush=True)

    def matrix(rows: list[dict[str, Any]]) -> tuple[Any, np.ndarray]:
        hs = hasher.transform([f for r in rows for f in r["feats"]])
        d = np.vstack([r["dense"] for r in rows])
        if args.no_states:
            d = d[:, :2]
        return hs, d, np.concatenate([r["y"] for r in rows])

    result: dict[str, Any] = {"min_p": args.min_p, "states": not args.no_states, "viterbi": {}, "rerank": {}}
    base = [0, 0, 0]
    grid: dict[str, list[int]] = {}
    for k in per_fold:
        for r in per_fold[k]["rows"]:
            base = [a + b for a, b in zip(base, counts(r["viterbi"], r["gold"]), strict=True)]
        fit_rows = [r for j in per_fold if j != k for r in per_fold[j]["rows"]]
        hs, d, y = matrix(fit_rows)
        mu, sd = d.mean(0), d.std(0) + 1e-6
        X = sparse.hstack([hs, sparse.csr_matrix((d - mu) / sd)]).tocsr()
        hs_t, d_t, _ = matrix(per_fold[k]["rows"])
        X_t = sparse.hstack([hs_t, sparse.csr_matrix((d_t - mu) / sd)]).tocsr()
        for c in args.c:
            model = LogisticRegression(C=c, max_iter=2000, solver="liblinear")
            model.fit(X, y)
            q_all = model.predict_proba(X_t)[:, 1]
            at = 0
            for r in per_fold[k]["rows"]:
                q = q_all[at:at + len(r["cands"])]
                at += len(r["cands"])
                for t in args.thresholds:
                    key = f"C={c},t={t}"
                    grid.setdefault(key, [0, 0, 0])
                    grid[key] = [a + b for a, b in zip(grid[key], counts(pick(r["cands"], q, t), r["gold"]), strict=True)]
        print(f"fold {k} done", file=sys.stderr, flush=True)
    result["viterbi"] = {"tp_fp_fn": base, "f1": f1(*base)}
    result["rerank"] = {key: {"tp_fp_fn": v, "f1": f1(*v)} for key, v in grid.items()}
    emit(result, args.json)


if __name__ == "__main__":
    main()
