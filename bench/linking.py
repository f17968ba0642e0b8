"""Duplicate-link speed: featurizer texts/s, and one link query (candidates + verify) vs store size.

    .venv/bin/python bench/linking.py [--sizes 1000,4000,12000] [--queries 200] [--no-sql]

Stored cases: the written corpus (train/dev) and the public messages (unlabelled, labelled,
replies, Fuzhou, hot), de-duplicated by text, in a fixed shuffled order; queries: re-submissions
of the written test split. Entities come from patterns + gazetteer (no NER model: this measures the
linker, not LAC). Each size is run with MemoryCaseIndex and with SqlCaseIndex over a fresh
temporary SQLite file (the product index: bands and keys in tables, vectors mirrored into faiss).
Latencies are per query, one at a time, one thread; compare sizes and indexes within one run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from training.linking import PUBLIC, WRITTEN, read_jsonl, to_petition
from triage.entities import EntityExtractor
from triage.linking.linker import load_linker
from triage.linking.memory import MemoryCaseIndex
from triage.taxonomy import load_taxonomy

PUBLIC_FILES = ("teddy2020_unlabeled.jsonl", "teddy2020_messages_labeled.jsonl", "teddy2020_replies.jsonl",
                "fuzhou12345_rivers.jsonl", "teddy2020_hot_messages.jsonl")


def stored_texts() -> list[dict]:
    rows = read_jsonl(WRITTEN / "train.jsonl") + read_jsonl(WRITTEN / "dev.jsonl")
    for name in PUBLIC_FILES:
        if (PUBLIC / name).exists():
            rows += [{"id": f"P{i}-{name[:6]}", "text": r["text"]}
                     for i, r in enumerate(read_jsonl(PUBLIC / name)) if r.get("text")]
    seen, out = set(), []
    for r in rows:
        if r["text"] not in seen:
            seen.add(r["text"])
            out.append({"id": str(r["id"]), "text": r["text"], "submitted_at": r.get("submitted_at"),
                        "petitioner": r.get("petitioner")})
    random.Random(7).shuffle(out)
    return out


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2)


def run(index_kind: str, size: int, rows: list[dict], queries: list[dict], extractor: EntityExtractor) -> dict:
    tmp = tempfile.TemporaryDirectory(prefix="bench-linking-")
    secret = b"bench"
    if index_kind == "memory":
        index = MemoryCaseIndex()
        store = None
    else:
        from triage.store import CaseStore
        from triage.store.index import SqlCaseIndex

        store = CaseStore.from_url(f"sqlite:///{Path(tmp.name) / 'bench.db'}", pii_secret=secret, auto_upgrade=True)
        index = SqlCaseIndex(store)
    linker = load_linker(index, secret=secret)
    t0 = time.perf_counter()
    pets = [to_petition(r) for r in rows[:size]]
    ents = [extractor.extract(p.text, p) for p in pets]
    feats = linker.featurizer.features_many([p.text for p in pets])
    if store is None:
        for p, e, f in zip(pets, ents, feats, strict=True):
            index.add(linker.snapshot_of(p, p.text, e), f)
    else:
        from triage.store import Registration

        for i in range(0, size, 500):
            store.register_many([Registration(p, e, extractor.version, f)
                                 for p, e, f in zip(pets[i:i + 500], ents[i:i + 500], feats[i:i + 500], strict=True)])
    load_s = time.perf_counter() - t0
    qp = [to_petition(r) for r in queries]
    qe = [extractor.extract(p.text, p) for p in qp]
    linker.link(qp[0], qp[0].text, qe[0])  # warm-up: the vector mirror loads on first use
    cand_ms, verify_ms, n_cands = [], [], []
    for p, e in zip(qp, qe, strict=True):
        t = time.perf_counter()
        snaps = linker.candidates(p, p.text, e)
        t1 = time.perf_counter()
        linker.score(p, p.text, e, snaps)
        t2 = time.perf_counter()
        cand_ms.append((t1 - t) * 1000)
        verify_ms.append((t2 - t1) * 1000)
        n_cands.append(len(snaps))
    total = [a + b for a, b in zip(cand_ms, verify_ms, strict=True)]
    if store is not None:
        store.engine.dispose()
    tmp.cleanup()
    return {"index": index_kind, "cases": size, "load_s": round(load_s, 1), "candidates_mean": round(statistics.mean(n_cands), 1),
            "candidates_ms": {"p50": pct(cand_ms, 50), "p99": pct(cand_ms, 99)},
            "verify_ms": {"p50": pct(verify_ms, 50), "p99": pct(verify_ms, 99)},
            "link_ms": {"p50": pct(total, 50), "p99": pct(total, 99)}}


def encoder_speed(rows: list[dict], n: int = 2000) -> dict:
    from triage.linking.features import load_default_featurizer, minhash
    from triage.text import normalize

    f = load_default_featurizer()
    texts = [normalize(r["text"]) for r in rows[:n]]
    chars = sum(len(t) for t in texts)
    out = {"texts": len(texts), "mean_chars": round(chars / len(texts))}
    for name, fn in (("features", f.features), ("encoder", lambda t: f.encoder.encode([t])), ("minhash", minhash)):
        t0 = time.perf_counter()
        for t in texts:
            fn(t)
        out[f"{name}_texts_per_s"] = round(len(texts) / (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,4000,12000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-sql", action="store_true")
    args = ap.parse_args()
    rows = stored_texts()
    sizes = [min(int(s), len(rows)) for s in args.sizes.split(",")]
    queries = [r for r in read_jsonl(WRITTEN / "test.jsonl") if r.get("duplicate_of")][:args.queries]
    extractor = EntityExtractor(load_taxonomy().gazetteer)
    import os

    print(json.dumps({"load_average": os.getloadavg(), "encoder": encoder_speed(rows)}, ensure_ascii=False), flush=True)
    for size in sizes:
        for kind in ("memory",) + (() if args.no_sql else ("sql",)):
            print(json.dumps(run(kind, size, rows, queries, extractor), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
