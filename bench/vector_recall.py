"""Vector index choice for the link mirror at 1M cases: recall@k against exact search on REAL corpus vectors.

The linker's encoder (models/default/linker/encoder.npz) embeds real texts — the written corpus (train, dev,
the linking dev history) and the public teddy2020 messages — which are stored among N distractors (load only,
they are never scored). Queries are real texts not stored: the linking dev queries (`triage linker-data
--split dev`: dev-eval.jsonl) and held-out teddy2020 hot messages. Ground truth is exact inner-product search
over everything stored ("gold_found": the earlier case a dev re-submission repeats is among the k found).
The written test split is not used.

Distractors (`--distractors-kind`):

* `recombined` (default): new petitions made of real sentences — the written train split and the teddy2020
  labelled / unlabelled / hot messages (minus the held-out hot queries), with every sentence that occurs in a
  query removed. The pool texts are clustered by their vectors (k-means, ~40 texts per cluster); each
  distractor takes a random pool text as its anchor (so topics keep the pool's frequencies), its number of
  sentences, and that many sentences drawn from the anchor's cluster (the first from the cluster's opening
  sentences); place names (data/places) and petitioner names are replaced by random ones and every digit is
  redrawn. They are embedded with the linker's encoder alone (`HashedTfidfEncoder.encode` of the normalised
  text — what `LinkFeaturizer.features_many` stores as the vector; equality is asserted on a sample), and
  cached as .npy under `--cache-dir`. The report compares the cosine of each query to its nearest distractor
  and to its nearest real text, at the same count and at N.
* `synthetic`: bench/store_scale.py's generator (random unit vectors around random cluster centres in 512
  dims): what run 4 used — nothing like real encoder vectors.

Indexes, each searched single-threaded for every query (configurations alternate query by query, so the
machine's load hits them alike): exact (brute force over everything, the reference cost); the product's
IVF base (`triage.store.index.build_ivf`, trained on a sample of all stored vectors as the mirror does) at each
`--nprobe`, plus other `--ivf` bases (codec, nlist, k-means iterations, points per centroid); optional HNSW
(`--hnsw M`, at each `--ef`, float32 or SQ8 storage).

Usage:
    .venv/bin/triage linker-data --split dev --out data/datasets/linking
    .venv/bin/python bench/vector_recall.py --distractors 1000000 --cache-dir /tmp/vr --out var/bench/vector_recall.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from store_scale import Generator  # noqa: E402

from triage.linking.features import HashedTfidfEncoder, LinkFeaturizer, load_encoder  # noqa: E402
from triage.schemas import Petition  # noqa: E402
from triage.store.index import build_ivf, set_search_params  # noqa: E402

PUBLIC = ROOT.parent / "shared" / "data" / "public"
_SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;\n]*|[。！？!?；;\n]+")
_DIGIT = re.compile(r"\d")
RECOMBINER_VERSION = "recombined-v1"


def _texts(path: Path) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            r = json.loads(line)
            if r.get("text"):
                out.append((str(r.get("id") or f"{path.stem}:{i}"), str(r["text"])))
    return out


def normalised(texts: list[str]) -> list[str]:
    """The text the linker encodes (the petition's normalised text)."""
    return [Petition(id="x", text=t).text for t in texts]


def sentences(text: str) -> list[str]:
    return [s for s in (m.group(0).strip() for m in _SENTENCE.finditer(text)) if s]


class Recombiner:
    """Realistic distractor petitions recombined from real sentences (see the module docstring)."""

    def __init__(self, texts: list[str], vectors: np.ndarray, exclude: set[str], seed: int = 0,
                 per_cluster: int = 40) -> None:
        self.seed = seed
        places: set[str] = set()
        for d in yaml.safe_load((ROOT / "data/places/chongqing.yaml").read_text(encoding="utf-8"))["districts"]:
            places.update([d["name"], *d.get("aliases", [])])
        for subs in yaml.safe_load((ROOT / "data/places/subdivisions.yaml").read_text(encoding="utf-8"))["subdivisions"].values():
            places.update(subs)
        self.places = sorted(places)
        names = set()
        with (ROOT / "data/corpus/written/train.jsonl").open(encoding="utf-8") as fh:
            for r in map(json.loads, fh):
                name = (r.get("petitioner") or {}).get("name")
                if name and 2 <= len(name) <= 4:
                    names.add(name)
        self.names = sorted(names)
        alt = re.compile("|".join(map(re.escape, sorted(places | names, key=len, reverse=True))))
        self.dropped = 0
        docs: list[list[str]] = []
        for t in texts:
            kept = []
            for s in sentences(t):
                if s in exclude:
                    self.dropped += 1
                    continue
                # slots: \x01 a place, \x02 a person name (digits are redrawn at generation)
                kept.append(alt.sub(lambda m: "\x02" if m.group(0) in names else "\x01", s))
            docs.append(kept)
        keep = [i for i, d in enumerate(docs) if d]
        self.docs = [docs[i] for i in keep]
        k = max(8, len(self.docs) // per_cluster)
        km = faiss.Kmeans(vectors.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
        v = np.ascontiguousarray(vectors[keep])
        km.train(v)
        self.cluster = km.index.search(v, 1)[1][:, 0]
        self.first: dict[int, list[str]] = {}
        self.rest: dict[int, list[str]] = {}
        for c, d in zip(self.cluster.tolist(), self.docs, strict=True):
            self.first.setdefault(c, []).append(d[0])
            self.rest.setdefault(c, []).extend(d[1:] or d)
        self.clusters = k

    def text(self, i: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + i)
        a = rng.randrange(len(self.docs))
        c = int(self.cluster[a])
        parts = [rng.choice(self.first[c])] + [rng.choice(self.rest[c]) for _ in range(len(self.docs[a]) - 1)]
        out = []
        for s in parts:
            s = _DIGIT.sub(lambda _: str(rng.randrange(10)), s)
            if "\x01" in s:
                s = "".join(p + (rng.choice(self.places) if j < s.count("\x01") else "") for j, p in enumerate(s.split("\x01")))
            if "\x02" in s:
                s = "".join(p + (rng.choice(self.names)[0] + rng.choice(self.names)[1:] if j < s.count("\x02") else "")
                            for j, p in enumerate(s.split("\x02")))
            out.append(s)
        return "".join(out)


def recombined_vectors(rec: Recombiner, encoder: HashedTfidfEncoder, n: int, cache: Path | None) -> np.ndarray:
    """n distractor vectors (ids 0..n-1), from the cache when present."""
    key = hashlib.sha256(f"{RECOMBINER_VERSION}|{encoder.version}|{rec.seed}|{len(rec.docs)}|{rec.clusters}|"
                         f"{sum(map(len, rec.docs))}".encode()).hexdigest()[:12]
    path = cache / f"{RECOMBINER_VERSION}-{key}-{n}.npy" if cache else None
    if path is not None and path.exists():
        print(f"distractor vectors from {path}", file=sys.stderr)
        return np.load(path)
    out = np.empty((n, encoder.dim), dtype=np.float32)
    t = time.perf_counter()
    for lo in range(0, n, 20_000):
        hi = min(n, lo + 20_000)
        out[lo:hi] = encoder.encode(normalised([rec.text(i) for i in range(lo, hi)]))
        if hi % 100_000 == 0 or hi == n:
            print(f"  {hi} distractors embedded, {hi / (time.perf_counter() - t):.0f}/s", file=sys.stderr)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


def nearest_cos(q: np.ndarray, base: np.ndarray) -> np.ndarray:
    return faiss.knn(q, base, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]


def quantiles(v: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(np.mean(v)), 4), **{f"p{p}": round(float(np.percentile(v, p)), 4) for p in (10, 50, 90)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--distractors", type=int, default=1_000_000)
    ap.add_argument("--distractors-kind", choices=["recombined", "synthetic"], default="recombined")
    ap.add_argument("--cache-dir", type=Path, help="where recombined distractor vectors are cached (.npy)")
    ap.add_argument("--linking-dir", type=Path, default=ROOT / "data/datasets/linking",
                    help="dev-history.jsonl / dev-eval.jsonl (`triage linker-data --split dev`)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--ivf", nargs="*", default=["SQ8:auto:10:40"], metavar="CODEC:NLIST:NITER:PPC",
                    help="IVF bases (triage.store.index.build_ivf: codec SQ8/Flat/PQfs, nlist or auto = the mirror's "
                         "2·√n, k-means iterations, training points per centroid), each searched at every --nprobe; "
                         "the default is the mirror's")
    ap.add_argument("--refine-factor", type=int, default=10, help="PQfs: k × this candidates re-ranked on SQ8 codes")
    ap.add_argument("--hnsw", type=int, default=0, help="also an HNSW index with this M (0: none)")
    ap.add_argument("--hnsw-codec", default="Flat", help="HNSW storage: Flat or SQ8")
    ap.add_argument("--ef-construction", type=int, default=40)
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--no-exact-timing", action="store_true", help="skip timing the brute-force search per query")
    ap.add_argument("--close", type=float, default=0.5, help="also recall of exact neighbours with cosine >= this")
    ap.add_argument("--hot-queries", type=int, default=300, help="teddy2020 hot messages held out as queries")
    ap.add_argument("--save-index-dir", type=Path, help="write the indexes here (file sizes reported)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)

    rng = random.Random(0)
    hot = _texts(PUBLIC / "teddy2020_hot_messages.jsonl")
    rng.shuffle(hot)
    q_hot, hot_stored = hot[:args.hot_queries], hot[args.hot_queries:]
    q_dev = _texts(args.linking_dir / "dev-eval.jsonl")
    stored_rows: dict[str, str] = {}
    for p in [ROOT / "data/corpus/written/train.jsonl", ROOT / "data/corpus/written/dev.jsonl",
              args.linking_dir / "dev-history.jsonl", PUBLIC / "teddy2020_messages_labeled.jsonl",
              PUBLIC / "teddy2020_unlabeled.jsonl"]:
        stored_rows.update(_texts(p))
    stored_rows.update(hot_stored)
    queries_text = {t for _, t in q_dev + q_hot}
    real = sorted({t for t in stored_rows.values() if t not in queries_text})
    pos = {t: i for i, t in enumerate(real)}
    with (args.linking_dir / "dev-eval.jsonl").open(encoding="utf-8") as fh:
        gold_of = {str(r["id"]): str(r["duplicate_of"]) for r in map(json.loads, fh) if r.get("duplicate_of")}
    # the earlier case each re-submission among the dev queries repeats (-1: not stored / no duplicate)
    gold = np.asarray([pos.get(stored_rows.get(gold_of.get(qid, ""), ""), -1) for qid, _ in q_dev], dtype=np.int64)
    encoder = load_encoder()
    assert isinstance(encoder, HashedTfidfEncoder)
    feat = LinkFeaturizer(encoder)

    def enc(texts: list[str]) -> np.ndarray:
        return encoder.encode(normalised(texts))

    t = time.perf_counter()
    real_v = enc(real)
    q = np.ascontiguousarray(np.vstack([enc([t for _, t in q_dev]), enc([t for _, t in q_hot])]))
    groups = {"linking_dev": slice(0, len(q_dev)), "hot_held_out": slice(len(q_dev), len(q))}
    print(f"encoded {len(real)} stored + {len(q)} query texts in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    dim = real_v.shape[1]

    gen = Generator(dim)
    info: dict[str, object] = {"kind": args.distractors_kind}
    if args.distractors_kind == "recombined":
        pool = [t for _, t in _texts(ROOT / "data/corpus/written/train.jsonl")]
        pool += [t for p in ("teddy2020_messages_labeled", "teddy2020_unlabeled") for _, t in _texts(PUBLIC / f"{p}.jsonl")]
        pool += [t for _, t in hot_stored]
        pool = sorted({t for t in pool if t not in queries_text})
        exclude = {s for t in normalised(sorted(queries_text)) for s in sentences(t)}
        t = time.perf_counter()
        rec = Recombiner(normalised(pool), enc(pool), exclude)
        sample = [rec.text(i) for i in range(0, args.distractors, max(1, args.distractors // 200))]
        served = np.stack([f.vector for f in feat.features_many(normalised(sample))])  # type: ignore[misc]
        assert np.array_equal(served, enc(sample)), "encoder-only vectors differ from the served LinkFeatures vectors"
        info.update(pool_texts=len(rec.docs), pool_sentences_dropped_as_query_sentences=rec.dropped,
                    clusters=rec.clusters, served_vector_equal_on=len(sample))
        dist = recombined_vectors(rec, encoder, args.distractors, args.cache_dir)
        info["make_s"] = round(time.perf_counter() - t, 1)
    else:
        dist = np.empty((args.distractors, dim), dtype=np.float32)
        for lo in range(0, args.distractors, 50_000):
            hi = min(args.distractors, lo + 50_000)
            dist[lo:hi] = gen.vectors(np.arange(lo, hi, dtype=np.int64))

    # how close the distractors come to real queries, against the real stored texts
    m = min(len(real_v), len(dist))
    synth = gen.vectors(np.arange(m, dtype=np.int64))
    info["query_nearest_cos"] = {
        "real_stored": quantiles(nearest_cos(q, real_v)),
        f"distractors_first_{m}": quantiles(nearest_cos(q, dist[:m])),
        f"distractors_all_{len(dist)}": quantiles(nearest_cos(q, dist)),
        f"synthetic_{m}_for_reference": quantiles(nearest_cos(q, synth)),
    }
    print(json.dumps(info), file=sys.stderr)

    n = len(dist) + len(real_v)
    x = np.empty((n, dim), dtype=np.float32)
    x[:len(dist)] = dist
    x[len(dist):] = real_v  # real vectors get the highest ids, as the newest cases would
    del dist
    D = args.distractors
    ids = np.arange(n, dtype=np.int64)

    sims, truth = faiss.knn(q, x, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    close = sims >= args.close  # exact neighbours similar enough to matter
    real_in_truth = float(np.mean(truth >= D))
    gold_rows = np.flatnonzero(gold >= 0)
    gold_ids = gold[gold_rows] + D
    gold_exact = float(np.mean([g in truth[r] for r, g in zip(gold_rows, gold_ids, strict=True)]))
    gold_rank = [int(np.sum(sims[r] > float(x[g] @ q[r]))) for r, g in zip(gold_rows, gold_ids, strict=True)]
    print(f"{n} vectors; exact gold found {gold_exact:.3f}", file=sys.stderr)

    built: dict[str, dict[str, float]] = {}
    indexes: list[tuple[str, object, str, list[int]]] = []  # (name, index, knob, values)
    for spec in args.ivf:
        codec, nlist, niter, ppc = spec.split(":")
        t = time.perf_counter()
        index = build_ivf(x, ids, codec=codec, nlist=None if nlist == "auto" else int(nlist), niter=int(niter),
                          points_per_centroid=int(ppc))
        name = f"IVF-{codec}-{faiss.extract_index_ivf(index).nlist}-it{niter}-ppc{ppc}"
        built[name] = {"nlist": int(faiss.extract_index_ivf(index).nlist), "build_s": round(time.perf_counter() - t, 1)}
        print(f"{name}: {built[name]}", file=sys.stderr)
        indexes.append((name, index, "nprobe", args.nprobe))
    if args.hnsw:
        t = time.perf_counter()
        h = (faiss.IndexHNSWFlat(dim, args.hnsw, faiss.METRIC_INNER_PRODUCT) if args.hnsw_codec == "Flat" else
             faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, args.hnsw, faiss.METRIC_INNER_PRODUCT))
        h.hnsw.efConstruction = args.ef_construction
        if args.hnsw_codec != "Flat":
            h.train(x[np.sort(np.random.default_rng(0).choice(n, size=min(n, 100_000), replace=False))])
        for lo in range(0, n, 100_000):
            h.add(x[lo:lo + 100_000])
            print(f"  HNSW {lo + min(100_000, n - lo)} added, {time.perf_counter() - t:.0f} s", file=sys.stderr)
        name = f"HNSW{args.hnsw}-{args.hnsw_codec}"
        built[name] = {"M": args.hnsw, "efConstruction": args.ef_construction, "build_s": round(time.perf_counter() - t, 1)}
        indexes.append((name, h, "efSearch", args.ef))
    if args.save_index_dir:
        args.save_index_dir.mkdir(parents=True, exist_ok=True)
        for name, index, _, _ in indexes:
            path = args.save_index_dir / f"{name}.faiss"
            faiss.write_index(index, str(path))
            built[name]["file_mb"] = round(path.stat().st_size / 2**20)

    faiss.omp_set_num_threads(1)  # as the mirror queries
    configs: list[tuple[str, object, str, int]] = [(nm, ix, knob, v) for nm, ix, knob, vals in indexes for v in vals]
    if not args.no_exact_timing:
        configs.append(("exact", None, "-", 0))
    found = {(c[0], c[3]): np.full((len(q), args.k), -1, dtype=np.int64) for c in configs}
    times: dict[tuple[str, int], list[float]] = {(c[0], c[3]): [] for c in configs}
    load = [os.getloadavg()[0]]
    for i in range(len(q)):
        qi = q[i:i + 1]
        for name, index, knob, v in (configs if i % 2 == 0 else configs[::-1]):
            t = time.perf_counter()
            if index is None:
                _, got = faiss.knn(qi, x, args.k, metric=faiss.METRIC_INNER_PRODUCT)
            else:
                if knob == "nprobe":
                    set_search_params(index, v, args.refine_factor)
                else:
                    index.hnsw.efSearch = v  # type: ignore[attr-defined]
                _, got = index.search(qi, args.k)  # type: ignore[attr-defined]
            times[(name, v)].append((time.perf_counter() - t) * 1000)
            found[(name, v)][i, :got.shape[1]] = got[0]
    load.append(os.getloadavg()[0])

    def recall(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean([len(set(r) & set(s)) / len(s) for r, s in zip(a, b, strict=True)]))

    rows = []
    for name, _, knob, v in configs:
        got = found[(name, v)]
        tm = np.asarray(times[(name, v)])
        rows.append({"index": name, knob: v,
                     **{f"recall@{args.k}_{g}": round(recall(got[s], truth[s]), 4) for g, s in groups.items()},
                     f"recall@{args.k}": round(recall(got, truth), 4),
                     "top1_found": round(float(np.mean([truth[j, 0] in got[j] for j in range(len(q))])), 4),
                     f"close_recall_{args.close}": round(float(np.sum([np.isin(truth[j][close[j]], got[j]).sum()
                                                                      for j in range(len(q))]) / max(1, close.sum())), 4),
                     "gold_found": round(float(np.mean([g in got[r] for r, g in zip(gold_rows, gold_ids, strict=True)])), 4),
                     "search_ms_p50": round(float(np.percentile(tm, 50)), 3),
                     "search_ms_p99": round(float(np.percentile(tm, 99)), 3)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    out = {"distractors": D, "distractors_info": info, "real_stored": len(real),
           "queries": {g: s.stop - s.start for g, s in groups.items()}, "k": args.k,
           "share_of_exact_topk_real": round(real_in_truth, 4), "close_pairs": int(close.sum()),
           "gold_pairs": len(gold_rows), "gold_found_exact": round(gold_exact, 4),
           "gold_exact_rank_quantiles": {f"p{p}": float(np.percentile(gold_rank, p)) for p in (50, 75, 90)},
           "load_avg": [round(v, 1) for v in load], "indexes": built, "configs": rows}
    print(json.dumps(out, ensure_ascii=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
