"""The linker on real messages: the read same-issue pairs of the 泰迪杯 hot messages.

data/corpus/real/hot_pairs_verified.jsonl holds 400 silver pairs read by a labeller (265 `same`
matter, 128 `related` = same estate/place but another matter, 7 `different`) and 219 hard
negatives found by reading (`related`). Texts come from ../shared/data/public/teddy2020_hot_messages.jsonl.

All 1,945 hot messages are registered in a MemoryCaseIndex; for every read pair the later
message is the query and the earlier one the candidate. Figures:

* candidate recall — the earlier message is among the query's candidates (petitioner keys are
  absent in this data: bands + vectors only);
* pair precision/recall at the linker's decision threshold — `same` is positive, `related` and
  `different` negative; the probability is the one the linker gives that candidate among the
  query's candidates (added when retrieval missed it, so that the verifier is judged on every pair);
* the same pairs judged by the context-free same-issue model of the hotspots (`issue.json`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.linking import CACHE, CORPUS, PUBLIC, make_extractor, prepare, read_jsonl

logger = logging.getLogger(__name__)

VERIFIED = CORPUS / "real" / "hot_pairs_verified.jsonl"


def evaluate_real_pairs(model_dir: Path, *, public_dir: Path = PUBLIC, ner: bool = True,
                        threshold: float | None = None) -> dict[str, Any]:
    from triage.linking.linker import load_linker, petition_keys
    from triage.linking.memory import MemoryCaseIndex
    from triage.linking.verifier import add_query_context, pair_features

    msgs = read_jsonl(public_dir / "teddy2020_hot_messages.jsonl")
    prep = prepare(msgs, make_extractor(ner), CACHE / "entities-hot.jsonl")
    linker = load_linker(MemoryCaseIndex(), model_dir=model_dir)
    t = linker.threshold if threshold is None else threshold
    for p, e in zip(prep.petitions, prep.entities, strict=True):
        linker.register(p, p.text, e)
    pos = prep.by_id()
    pairs = read_jsonl(VERIFIED)
    from triage.linking.hotspots import ISSUE_FILE
    from triage.linking.verifier import LinkVerifier

    issue = LinkVerifier.load(model_dir / ISSUE_FILE)
    probs, labels, retrieved, issue_rows = [], [], [], []
    cand_cache: dict[str, dict[str, float]] = {}
    for pr in pairs:
        a, b = str(pr["a"]), str(pr["b"])
        pa, pb = prep.petitions[pos[a]], prep.petitions[pos[b]]
        q, c = (pb, pa) if (pb.submitted_at or 0) >= (pa.submitted_at or 0) else (pa, pb)  # type: ignore[operator]
        qe = prep.entities[pos[q.id]]
        snaps = linker.candidates(q, q.text, qe)
        found = any(s.case_id == c.id for s in snaps)
        if not found:
            snaps += linker.index.snapshots([c.id])
        view = linker.view(q.text, qe, petition_keys(q.petitioner, qe, linker.secret), q.submitted_at)
        feats = [pair_features(view, linker.view_of_snapshot(s)) for s in snaps]
        add_query_context(feats)
        p_all = linker.verifier.probability(linker.verifier.matrix(feats))
        cand_cache[q.id] = {s.case_id: float(p) for s, p in zip(snaps, p_all, strict=True)}
        probs.append(cand_cache[q.id][c.id])
        issue_rows.append(feats[[s.case_id for s in snaps].index(c.id)])
        labels.append(int(pr["verdict"] == "same"))
        retrieved.append(found)
    probs_a, labels_a, retrieved_a = np.asarray(probs), np.asarray(labels), np.asarray(retrieved)
    pred = probs_a >= t
    tp = int((pred & (labels_a == 1)).sum())
    fp = int((pred & (labels_a == 0)).sum())
    fn = int((~pred & (labels_a == 1)).sum())
    auc = float(np.mean([[pp > nn for nn in probs_a[labels_a == 0]] for pp in probs_a[labels_a == 1]]))
    sweep = []
    for th in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        pr_ = probs_a >= th
        tp_, fp_ = int((pr_ & (labels_a == 1)).sum()), int((pr_ & (labels_a == 0)).sum())
        sweep.append({"threshold": th, "precision": round(tp_ / (tp_ + fp_), 4) if tp_ + fp_ else 0.0,
                      "recall": round(tp_ / int(labels_a.sum()), 4)})
    ip = issue.probability(issue.matrix(issue_rows)) >= issue.threshold
    itp, ifp = int((ip & (labels_a == 1)).sum()), int((ip & (labels_a == 0)).sum())
    ifn = int((~ip & (labels_a == 1)).sum())
    return {
        "issue_model_pair": {"threshold": issue.threshold, "precision": round(itp / (itp + ifp), 4) if itp + ifp else 0.0,
                             "recall": round(itp / (itp + ifn), 4) if itp + ifn else 0.0, "tp": itp, "fp": ifp, "fn": ifn},
        "pairs": len(pairs), "same": int(labels_a.sum()), "not_same": int((labels_a == 0).sum()),
        "threshold": t, "linker": linker.version,
        "pair": {"precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
                 "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
                 "tp": tp, "fp": fp, "fn": fn, "auc": round(auc, 4)},
        "candidate_recall_same": round(float(retrieved_a[labels_a == 1].mean()), 4),
        "candidate_rate_not_same": round(float(retrieved_a[labels_a == 0].mean()), 4),
        "sweep": sweep,
        "note": "threshold from the written corpus (dev + out-of-fold train); the sweep is shown for reading, not for choosing",
    }
