"""How the case store scales: write rate, link-candidate query latency, memory — at 10k, 100k (1M) cases.

SYNTHETIC DATA FOR LOAD ONLY. The generator below makes template texts, random band hashes with
controlled sharing inside "matter clusters" and random unit vectors around cluster centres. It
exists to put rows in tables and measure cost; it says nothing about linking accuracy and must
never be used for accuracy claims.

For each store size it measures, in one run (so the figures are comparable):

* bulk fill rate (the generator's loader: PostgreSQL COPY through psycopg, SQLite executemany) —
  this is how the bench fills the store, not how the product ingests;
* product write rate: `CaseStore.register_many` in batches of 200 (case, petitioner keys, 32 band
  hashes, vector, audit event with the hash chain) — features precomputed, no NER;
* the link-candidate query the linker makes per petition, through `SqlCaseIndex`: petitioner
  cases + band candidates (32 bands) + vector candidates (k=20, faiss mirror) + snapshots of the
  union of the top 20 of each — p50/p99 per part and in total;
* the vector mirror's first load (time) and the process RSS after it.

Usage:
    .venv/bin/python bench/store_scale.py --backend sqlite --sizes 10000 100000
    .venv/bin/python bench/store_scale.py --backend postgres --sizes 10000 100000 1000000
One JSON object per size on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.linking.index import LinkFeatures  # noqa: E402
from triage.schemas import Petition  # noqa: E402
from triage.store import CaseStore, Registration, make_engine, upgrade  # noqa: E402
from triage.store.index import SqlCaseIndex  # noqa: E402

SECRET = b"bench-secret"
BANDS = 32
PLACES = ["渝中区解放碑街道", "江北区观音桥街道", "沙坪坝区小龙坎街道", "九龙坡区杨家坪街道", "南岸区南坪街道", "北碚区天生街道",
          "万州区高笋塘街道", "涪陵区敦仁街道", "永川区中山路街道", "合川区南津街街道"]
MATTERS = ["小区噪声扰民，夜间施工持续到凌晨", "公司拖欠工资三个月不发", "物业停水停电催缴物业费", "路灯损坏多时无人维修",
           "餐馆油烟直排影响居民生活", "开发商逾期交房拒付违约金", "医保报销比例与政策不符", "孩子入学被拒要求说明理由",
           "村干部优亲厚友违规分配补助", "河道垃圾堆积污染水体", "违建占用消防通道存在安全隐患", "低保申请迟迟没有答复"]
FILLER = "请有关部门尽快调查处理，依法维护群众合法权益。此前已多次向相关单位反映，至今未得到解决。"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of uint64 keys: fast, deterministic pseudo-random bits for the generator."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(x: np.ndarray, salt: int) -> np.ndarray:
    return (_mix(x, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


class Generator:
    """Deterministic synthetic cases in matter clusters (LOAD ONLY — see the module docstring)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.t0 = datetime(2024, 1, 1, tzinfo=UTC)

    @staticmethod
    def clusters(ids: np.ndarray) -> np.ndarray:
        return np.where(ids % 7 != 0, ids // 3, ids + (1 << 40))  # clusters of about three cases, some singletons

    def bands(self, ids: np.ndarray) -> np.ndarray:
        """[n, BANDS] signed 64-bit band hashes; about half shared inside a cluster."""
        c, b = self.clusters(ids)[:, None], np.arange(BANDS, dtype=np.int64)[None, :]
        shared, own = _mix(c * 64 + b, 1), _mix(ids[:, None] * 64 + b, 2)
        mask = (_mix(ids[:, None] * 64 + b, 3) & np.uint64(1)).astype(bool)
        return np.where(mask, shared, own).view(np.int64)

    def vectors(self, ids: np.ndarray, noise: float = 0.6) -> np.ndarray:
        d = np.arange(self.dim, dtype=np.int64)[None, :]
        v = _uniform(self.clusters(ids)[:, None] * self.dim + d, 4) + noise * _uniform(ids[:, None] * self.dim + d, 5)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def petitioner_keys(self, ids: np.ndarray) -> list[str]:
        # A cluster's cases mostly share one petitioner; some petitioners file about every 50th case.
        c = self.clusters(ids)
        other = _mix(ids, 7) % np.maximum(1, ids // 50 + 1).astype(np.uint64)
        who = np.where(_mix(ids, 6) % np.uint64(10) < np.uint64(8), c.astype(np.uint64), other + np.uint64(1 << 50))
        return [f"{int(w):064x}" for w in who]

    def rows(self, lo: int, hi: int) -> list[dict[str, object]]:
        ids = np.arange(lo, hi, dtype=np.int64)
        bands, vecs, keys = self.bands(ids), self.vectors(ids), self.petitioner_keys(ids)
        picks = _mix(self.clusters(ids), 8)
        out = []
        for k, i in enumerate(range(lo, hi)):
            pick = int(picks[k])
            text = f"{PLACES[pick % len(PLACES)]}{MATTERS[(pick >> 8) % len(MATTERS)]}（编号{i}）。{FILLER * (1 + i % 3)}"
            out.append({"id": f"SYN-{i:08d}", "text": text, "submitted_at": self.t0 + timedelta(minutes=3 * i), "key": keys[k],
                        "bands": bands[k], "vector": vecs[k]})
        return out


def bulk_fill(engine: sa.Engine, gen: Generator, start: int, stop: int, chunk: int = 20_000) -> float:
    """Insert synthetic cases [start, stop) with keys, bands and vectors; return seconds."""
    t = time.perf_counter()
    now = datetime.now(UTC)
    for lo in range(start, stop, chunk):
        rows = gen.rows(lo, min(stop, lo + chunk))
        if engine.dialect.name == "postgresql":
            _copy_pg(engine, rows, now)
        else:
            _executemany_sqlite(engine, rows, now)
        print(f"  filled {min(stop, lo + chunk):,}", file=sys.stderr, flush=True)
    return time.perf_counter() - t


def _case_tuple(r: dict[str, object], now: datetime) -> tuple[object, ...]:
    return (r["id"], r["text"], uuid.uuid4().hex + uuid.uuid4().hex, r["submitted_at"], "online", "auto", "P2", False,
            "bench", now, now, 1)


CASE_COLS = ("id, text, content_hash, submitted_at, channel, status, priority, confidential, source, created_at, "
             "updated_at, version")


def _copy_pg(engine: sa.Engine, rows: list[dict[str, object]], now: datetime) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:  # type: ignore[union-attr]
            with cur.copy(f"COPY cases ({CASE_COLS}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(_case_tuple(r, now))
            with cur.copy("COPY case_petitioner_keys (case_id, key) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row((r["id"], r["key"]))
            with cur.copy("COPY case_bands (case_id, band) FROM STDIN") as cp:
                for r in rows:
                    for b in dict.fromkeys(r["bands"].tolist()):  # type: ignore[union-attr]
                        cp.write_row((r["id"], b))
            with cur.copy("COPY case_vectors (case_id, dim, vector) FROM STDIN") as cp:
                for r in rows:
                    v = r["vector"]
                    cp.write_row((r["id"], v.shape[0], v.tobytes()))  # type: ignore[union-attr]
        conn.commit()  # type: ignore[union-attr]
    finally:
        raw.close()


def _executemany_sqlite(engine: sa.Engine, rows: list[dict[str, object]], now: datetime) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany(f"INSERT INTO cases ({CASE_COLS}) VALUES ({', '.join('?' * 12)})",
                        [tuple(x.isoformat(" ") if isinstance(x, datetime) else x for x in _case_tuple(r, now)) for r in rows])
        cur.executemany("INSERT INTO case_petitioner_keys (case_id, key) VALUES (?, ?)", [(r["id"], r["key"]) for r in rows])
        cur.executemany("INSERT INTO case_bands (case_id, band) VALUES (?, ?)",
                        [(r["id"], b) for r in rows for b in dict.fromkeys(r["bands"].tolist())])  # type: ignore[union-attr]
        cur.executemany("INSERT INTO case_vectors (case_id, dim, vector) VALUES (?, ?, ?)",
                        [(r["id"], r["vector"].shape[0], r["vector"].tobytes()) for r in rows])  # type: ignore[union-attr]
        cur.execute("COMMIT")
    finally:
        raw.close()


def product_writes(store: CaseStore, gen: Generator, start: int, n: int, batch: int = 200) -> float:
    """Cases per second through CaseStore.register_many (the product path, audit chain included)."""
    t = time.perf_counter()
    for lo in range(start, start + n, batch):
        regs = []
        for r in gen.rows(lo, min(start + n, lo + batch)):
            p = Petition(id=f"W{r['id']}", text=str(r["text"]), submitted_at=r["submitted_at"])  # type: ignore[arg-type]
            feats = LinkFeatures(bands=tuple(r["bands"].tolist()), vector=r["vector"])  # type: ignore[union-attr]
            regs.append(Registration(p, None, None, feats))
        store.register_many(regs, actor="bench")
    return n / (time.perf_counter() - t)


def queries(gen: Generator, stored: int, n: int, seed: int = 11) -> Iterator[tuple[list[str], list[int], np.ndarray]]:
    """Query features: 80% near-duplicates of a stored case (share bands, nearby vector, same petitioner), 20% new."""
    r = random.Random(seed)
    for q in range(n):
        if r.random() < 0.8:
            i = np.array([r.randrange(stored)], dtype=np.int64)
            bands = gen.bands(i)[0].tolist()
            keep = set(r.sample(range(BANDS), BANDS // 2))
            bands = [bands[k] if k in keep else r.getrandbits(62) for k in range(BANDS)]
            vec = _near(gen.vectors(i)[0], q)
            yield gen.petitioner_keys(i), bands, vec
        else:
            v = np.random.default_rng(q).normal(size=gen.dim).astype(np.float32)
            yield [f"new-{q}"], [r.getrandbits(62) for _ in range(BANDS)], v / np.linalg.norm(v)


def _near(v: np.ndarray, q: int) -> np.ndarray:
    """A nearby unit vector (the same matter written again)."""
    w = v + 0.05 * _uniform(np.arange(v.shape[0], dtype=np.int64) + q * 10_000, 9).astype(np.float32)
    return (w / np.linalg.norm(w)).astype(np.float32)


def measure_queries(index: SqlCaseIndex, gen: Generator, stored: int, n: int) -> dict[str, dict[str, float]]:
    parts: dict[str, list[float]] = {"petitioner": [], "bands": [], "vectors": [], "snapshots": [], "total": []}
    for keys, bands, vec in queries(gen, stored, n):
        t0 = time.perf_counter()
        pc = index.petitioner_cases(keys, limit=50)
        t1 = time.perf_counter()
        bc = index.band_candidates(bands, limit=100)
        t2 = time.perf_counter()
        vc = index.vector_candidates(vec, k=20)
        t3 = time.perf_counter()
        ids = list(dict.fromkeys([*pc[:20], *(c for c, _ in bc[:20]), *(c for c, _ in vc[:20])]))
        snaps = index.snapshots(ids)
        t4 = time.perf_counter()
        assert len(snaps) == len(ids)
        for name, dt in (("petitioner", t1 - t0), ("bands", t2 - t1), ("vectors", t3 - t2), ("snapshots", t4 - t3),
                         ("total", t4 - t0)):
            parts[name].append(dt * 1000)
    return {k: {"p50": round(float(np.percentile(v, 50)), 2), "p99": round(float(np.percentile(v, 99)), 2)}
            for k, v in parts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=128, help="vector dimension (the linker encoder's)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--writes", type=int, default=2_000, help="cases written through the product path per size")
    ap.add_argument("--pg-admin", default=os.environ.get("TRIAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="store_scale_")
    admin = None
    if args.backend == "sqlite":
        url = f"sqlite:///{tmp.name}/bench.db"
    else:
        admin = sa.create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
        name = f"triage_bench_{os.getpid()}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    store = CaseStore(engine, pii_secret=SECRET)
    gen = Generator(args.dim)
    filled = 0
    try:
        for size in sorted(args.sizes):
            target = size - args.writes
            fill_s = bulk_fill(engine, gen, filled, target) if target > filled else 0.0
            fill_rate = (target - filled) / fill_s if fill_s else None
            filled = max(filled, target)
            write_rate = product_writes(store, gen, 10**8 + size, args.writes)
            with engine.begin() as c:
                c.exec_driver_sql("ANALYZE")
            stored = store.count_cases()
            rss0 = rss_mb()
            index = SqlCaseIndex(store)
            t = time.perf_counter()
            index.vectors.refresh()
            mirror_s = time.perf_counter() - t
            lat = measure_queries(index, gen, filled, args.queries)
            with engine.connect() as c:
                if engine.dialect.name == "postgresql":
                    db_mb = c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one() / 2**20
                else:
                    db_mb = Path(engine.url.database or "").stat().st_size / 2**20
            out = {"backend": args.backend, "cases": stored, "dim": args.dim,
                   "bulk_fill_cases_per_s": round(fill_rate) if fill_rate else None,
                   "product_writes_cases_per_s": round(write_rate, 1),
                   "mirror_load_s": round(mirror_s, 2), "mirror_kind": index.vectors.kind,
                   "rss_mb_before_mirror": round(rss0), "rss_mb": round(rss_mb()), "db_mb": round(db_mb),
                   "query_ms": lat, "queries": args.queries}
            print(json.dumps(out, ensure_ascii=False), flush=True)
            del index
    finally:
        engine.dispose()
        if admin is not None and not args.keep:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{engine.url.database}" WITH (FORCE)')
            admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
