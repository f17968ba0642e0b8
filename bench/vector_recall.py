"""Vector index choice for the link mirror at 1M cases: recall@k against exact search on REAL corpus vectors.

The linker's encoder (models/default/linker/encoder.npz) embeds real texts — the written corpus (train, dev,
the linking dev history) and the public teddy2020 messages — which are stored among N synthetic distractors
(bench/store_scale.py's generator: load only, they are never scored). Queries are real texts not stored:
the linking dev queries (data/datasets/linking/dev-eval.jsonl) and held-out teddy2020 hot messages. Ground
truth is exact inner-product search over everything stored ("gold_found": the earlier case a dev re-submission
repeats is among the k found); each IVF configuration (Flat, SQ8, PQ64 re-ranked on float32 (nlist ≈ 2·√N as the
mirror builds it, trained the same way on a sample of all stored vectors) reports recall@k and its
single-thread search time (configurations alternate query by query, so the machine's load hits them alike).
The test split is not used.

Usage:
    .venv/bin/python bench/vector_recall.py --distractors 1000000 --out var/bench/vector_recall.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from store_scale import Generator  # noqa: E402

from triage.linking.features import LinkFeaturizer, load_encoder  # noqa: E402
from triage.schemas import Petition  # noqa: E402

PUBLIC = ROOT.parent / "shared" / "data" / "public"


def _texts(path: Path) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            r = json.loads(line)
            if r.get("text"):
                out.append((str(r.get("id") or f"{path.stem}:{i}"), str(r["text"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--distractors", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--close", type=float, default=0.5, help="also recall of exact neighbours with cosine >= this")
    ap.add_argument("--refine", type=int, default=200, help="PQ candidates re-ranked exactly")
    ap.add_argument("--hot-queries", type=int, default=300, help="teddy2020 hot messages held out as queries")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)

    rng = random.Random(0)
    hot = _texts(PUBLIC / "teddy2020_hot_messages.jsonl")
    rng.shuffle(hot)
    q_hot, hot_stored = hot[:args.hot_queries], hot[args.hot_queries:]
    q_dev = _texts(ROOT / "data/datasets/linking/dev-eval.jsonl")
    stored_rows: dict[str, str] = {}
    for p in [ROOT / "data/corpus/written/train.jsonl", ROOT / "data/corpus/written/dev.jsonl",
              ROOT / "data/datasets/linking/dev-history.jsonl", PUBLIC / "teddy2020_messages_labeled.jsonl",
              PUBLIC / "teddy2020_unlabeled.jsonl"]:
        stored_rows.update(_texts(p))
    stored_rows.update(hot_stored)
    queries_text = {t for _, t in q_dev + q_hot}
    real = sorted({t for t in stored_rows.values() if t not in queries_text})
    pos = {t: i for i, t in enumerate(real)}
    with (ROOT / "data/datasets/linking/dev-eval.jsonl").open(encoding="utf-8") as fh:
        gold_of = {str(r["id"]): str(r["duplicate_of"]) for r in map(json.loads, fh) if r.get("duplicate_of")}
    # the earlier case each re-submission among the dev queries repeats (-1: not stored / no duplicate)
    gold = np.asarray([pos.get(stored_rows.get(gold_of.get(qid, ""), ""), -1) for qid, _ in q_dev], dtype=np.int64)
    feat = LinkFeaturizer(load_encoder())

    def enc(texts: list[str]) -> np.ndarray:
        # the linker encodes the petition's normalised text
        norm = [Petition(id="x", text=t).text for t in texts]
        return np.stack([f.vector for f in feat.features_many(norm)]).astype(np.float32)  # type: ignore[misc]

    t = time.perf_counter()
    real_v = enc(real)
    q = np.ascontiguousarray(np.vstack([enc([t for _, t in q_dev]), enc([t for _, t in q_hot])]))
    groups = {"linking_dev": slice(0, len(q_dev)), "hot_held_out": slice(len(q_dev), len(q))}
    print(f"encoded {len(real)} stored + {len(q)} query texts in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    gen = Generator(real_v.shape[1])
    n = args.distractors + len(real_v)
    x = np.empty((n, real_v.shape[1]), dtype=np.float32)
    for lo in range(0, args.distractors, 50_000):
        hi = min(args.distractors, lo + 50_000)
        x[lo:hi] = gen.vectors(np.arange(lo, hi, dtype=np.int64))
    x[args.distractors:] = real_v  # real vectors get the highest ids, as the newest cases would
    ids = np.arange(n, dtype=np.int64)
    print(f"{n} vectors ready", file=sys.stderr)

    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    sims, truth = exact.search(q, args.k)
    close = sims >= args.close  # exact neighbours similar enough to matter (the 20th is often ~0.17: noise)
    del exact
    real_in_truth = float(np.mean(truth >= args.distractors))
    gold_rows = np.flatnonzero(gold >= 0)
    gold_ids = gold[gold_rows] + args.distractors
    gold_exact = float(np.mean([g in truth[r] for r, g in zip(gold_rows, gold_ids, strict=True)]))

    nlist = int(min(4096, max(64, 2 * np.sqrt(n))))
    sample = x[np.sort(np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False))]
    t = time.perf_counter()
    flat = faiss.index_factory(x.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    flat.cp.niter, flat.cp.max_points_per_centroid = 10, 40
    flat.train(sample)
    train_s = time.perf_counter() - t
    sq8 = faiss.IndexIVFScalarQuantizer(flat.quantizer, x.shape[1], nlist, faiss.ScalarQuantizer.QT_8bit,
                                        faiss.METRIC_INNER_PRODUCT)
    sq8.train(sample)  # the scalar quantiser's ranges only: the coarse quantizer is already trained
    pq = faiss.IndexIVFPQ(flat.quantizer, x.shape[1], nlist, 64, 8, faiss.METRIC_INNER_PRODUCT)
    pq.train(sample)  # 64 bytes per vector; searched for --refine candidates re-ranked on the float32 vectors
    t = time.perf_counter()
    assign = np.empty(n, dtype=np.int64)
    for lo in range(0, n, 100_000):
        assign[lo:lo + 100_000] = flat.quantizer.search(x[lo:lo + 100_000], 1)[1][:, 0]
    for index in (flat, sq8, pq):
        index.add_core(n, faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))
    add_s = time.perf_counter() - t
    print(f"IVF{nlist}: trained in {train_s:.0f} s, added in {add_s:.0f} s", file=sys.stderr)

    faiss.omp_set_num_threads(1)  # as the mirror queries
    configs = [(name, index, p) for p in args.nprobe for name, index in (("Flat", flat), ("SQ8", sq8), ("PQ64+refine", pq))]
    found = {c[:1] + (c[2],): np.empty((len(q), args.k), dtype=np.int64) for c in configs}
    times: dict[tuple[str, int], list[float]] = {(c[0], c[2]): [] for c in configs}
    load = [os.getloadavg()[0]]
    for i in range(len(q)):
        order = configs if i % 2 == 0 else configs[::-1]
        for name, index, p in order:
            index.nprobe = p
            t = time.perf_counter()
            if index is pq:
                _, cand = index.search(q[i:i + 1], args.refine)
                cand = cand[0][cand[0] >= 0]
                got = cand[np.argsort(-(x[cand] @ q[i]), kind="stable")[:args.k]][None, :]
            else:
                _, got = index.search(q[i:i + 1], args.k)
            times[(name, p)].append((time.perf_counter() - t) * 1000)
            found[(name, p)][i] = -1
            found[(name, p)][i, :got.shape[1]] = got[0]
    load.append(os.getloadavg()[0])

    def recall(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean([len(set(r) & set(s)) / len(s) for r, s in zip(a, b, strict=True)]))

    rows = []
    for name, _, p in configs:
        got = found[(name, p)]
        tm = np.asarray(times[(name, p)])
        rows.append({"codec": name, "nprobe": p, "nlist": nlist,
                     **{f"recall@{args.k}_{g}": round(recall(got[s], truth[s]), 4) for g, s in groups.items()},
                     f"recall@{args.k}": round(recall(got, truth), 4),
                     "top1_found": round(float(np.mean([truth[j, 0] in got[j] for j in range(len(q))])), 4),
                     f"close_recall_{args.close}": round(float(np.sum([np.isin(truth[j][close[j]], got[j]).sum()
                                                                      for j in range(len(q))]) / max(1, close.sum())), 4),
                     "gold_found": round(float(np.mean([g in got[r] for r, g in zip(gold_rows, gold_ids, strict=True)])), 4),
                     "search_ms_p50": round(float(np.percentile(tm, 50)), 3),
                     "search_ms_p99": round(float(np.percentile(tm, 99)), 3)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    out = {"distractors": args.distractors, "real_stored": len(real), "queries": {g: s.stop - s.start for g, s in groups.items()},
           "k": args.k, "share_of_exact_topk_real": round(real_in_truth, 4),
           "close_pairs": int(close.sum()), "gold_pairs": len(gold_rows), "gold_found_exact": round(gold_exact, 4),
           "load_avg": [round(v, 1) for v in load],
           "ivf_train_s": round(train_s, 1), "ivf_add_s": round(add_s, 1), "configs": rows}
    print(json.dumps(out, ensure_ascii=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
