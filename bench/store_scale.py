"""How the case store scales: write rate, link-candidate query latency, memory — at 10k, 100k, 1M cases.

SYNTHETIC DATA FOR LOAD ONLY. The generator below makes template texts, random band hashes with
controlled sharing inside "matter clusters" (and, with --hot-fraction, mass-petition "campaigns"
whose cases share 24 of 32 band values: hot bands) and random unit vectors around cluster centres.
It exists to put rows in tables and measure cost; it says nothing about linking accuracy and must
never be used for accuracy claims.

For each store size it measures, in one run (so the figures are comparable):

* bulk fill (the generator's loader: PostgreSQL COPY through psycopg, SQLite executemany, with the
  case/link tables' secondary indexes and constraints dropped during the load and rebuilt after it,
  then VACUUM ANALYZE; the tables stay logged) — this is how the bench fills the store, not how the product
  ingests;
* product write rate: `CaseStore.register_many` in batches of 200 (case, petitioner keys, 32 band
  hashes, vector, audit event with the hash chain) — features precomputed, no NER;
* the link-candidate step of `CaseLinker.candidates`, through `SqlCaseIndex`, with the linker's
  default limits: petitioner cases (50) + band candidates (32 bands, 50) + vector candidates (30,
  faiss mirror) + snapshots of the union — client p50/p99 per part and in total over --queries
  queries; the band query also with a per-band fan-out cap (`band_fanout`) on the same features;
* on PostgreSQL the server-side time of the same statements (EXPLAIN ANALYZE replay of the first
  --explain queries), which busy client cores do not inflate; plus two contention probes timed
  between queries (a fixed numpy job, a bare SELECT 1) to show what the machine adds to the tail;
* the vector mirror's first load (time), the process RSS before/after it, and the IVF recall
  against exact search on the same (synthetic) vectors.

Usage:
    .venv/bin/python bench/store_scale.py --backend sqlite --sizes 10000 100000
    .venv/bin/python bench/store_scale.py --backend postgres --sizes 10000 100000 1000000
    .venv/bin/python bench/store_scale.py --backend postgres --sizes 1000000 --pg-db NAME --keep   # reuse / keep a store
One JSON object per size on stdout; progress on stderr. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.linking.index import CandidateLimits, CaseSnapshot, LinkFeatures  # noqa: E402
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


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory of this process (VmRSS; RssAnon: private heap; RssFile: mapped files, shareable page cache)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_probe(url: str, index_dir: str, codec: str, nprobe: int | None, dim: int, stored: int, n: int = 300,
                 vectors_npy: Path | None = None) -> None:
    """(--worker-probe, a separate process) What one more API worker pays: open the link index's vector mirror
    (persisted base memory-mapped + the newer rows), then `n` vector queries; prints one JSON line."""
    store = CaseStore(make_engine(url), pii_secret=SECRET)
    rss0 = rss_mb()
    index = SqlCaseIndex(store, nprobe=nprobe, index_dir=Path(index_dir), codec=codec)
    t = time.perf_counter()
    index.vectors.refresh()
    open_s = time.perf_counter() - t
    rss1, anon1 = rss_mb(), rss_mb("RssAnon")
    lat = []
    for _, _, vec in queries(Generator(dim, vectors_npy=vectors_npy), stored, n, seed=31):
        t = time.perf_counter()
        index.vector_candidates(vec, k=CandidateLimits().vectors)
        lat.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"open_s": round(open_s, 3), "persisted": index.vectors.persisted is not None,
                      "rss_mb_before": round(rss0), "rss_mb_open": round(rss1), "rss_anon_mb_open": round(anon1),
                      "rss_mb_after_queries": round(rss_mb()), "rss_anon_mb_after_queries": round(rss_mb("RssAnon")),
                      "rss_file_mb_after_queries": round(rss_mb("RssFile")),
                      "vectors_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99)}, "load": round(os.getloadavg()[0], 1)}))
    store.engine.dispose()


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

    def __init__(self, dim: int, hot_fraction: float = 0.0, campaigns: int = 20, vectors_npy: Path | None = None) -> None:
        self.dim = dim
        # --vectors-npy: case i gets row i (mod its length) of these vectors instead of a synthetic one — e.g. the
        # realistic distractors of bench/vector_recall.py (real sentences recombined, the linker's encoder), so the
        # IVF lists have the sizes real vectors give them
        self.table = np.load(vectors_npy, mmap_mode="r") if vectors_npy is not None else None
        if self.table is not None and self.table.shape[1] != dim:
            raise ValueError(f"{vectors_npy}: dimension {self.table.shape[1]}, expected {dim}")
        self.t0 = datetime(2024, 1, 1, tzinfo=UTC)
        self.hot_permille = int(round(hot_fraction * 1000))
        self.campaigns = campaigns

    @staticmethod
    def clusters(ids: np.ndarray) -> np.ndarray:
        return np.where(ids % 7 != 0, ids // 3, ids + (1 << 40))  # clusters of about three cases, some singletons

    def bands(self, ids: np.ndarray) -> np.ndarray:
        """[n, BANDS] signed 64-bit band hashes; about half shared inside a cluster."""
        c, b = self.clusters(ids)[:, None], np.arange(BANDS, dtype=np.int64)[None, :]
        shared, own = _mix(c * 64 + b, 1), _mix(ids[:, None] * 64 + b, 2)
        mask = (_mix(ids[:, None] * 64 + b, 3) & np.uint64(1)).astype(bool)
        out = np.where(mask, shared, own)
        if self.hot_permille:
            # "Campaigns" (mass petitions, one template): hot_fraction of all cases fall into one of `campaigns`
            # groups sharing 24 of 32 band values, so a hot band holds hot_fraction·N/campaigns cases.
            hot = (_mix(ids, 10) % np.uint64(1000) < np.uint64(self.hot_permille))[:, None] & (b < 24)
            camp = (_mix(ids, 11) % np.uint64(self.campaigns)).astype(np.int64)[:, None]
            out = np.where(hot, _mix(camp * 64 + b + (1 << 45), 12), out)
        return out.view(np.int64)

    def hot_bands(self) -> list[int]:
        """The campaigns' shared band values (empty without --hot-fraction)."""
        if not self.hot_permille:
            return []
        camp, b = np.arange(self.campaigns, dtype=np.int64)[:, None], np.arange(24, dtype=np.int64)[None, :]
        return _mix(camp * 64 + b + (1 << 45), 12).view(np.int64).ravel().tolist()  # type: ignore[no-any-return]

    def vectors(self, ids: np.ndarray, noise: float = 0.6) -> np.ndarray:
        if self.table is not None:
            return np.ascontiguousarray(self.table[np.asarray(ids) % len(self.table)], dtype=np.float32)
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


def bulk_fill(engine: sa.Engine, gen: Generator, start: int, stop: int, chunk: int = 20_000) -> dict[str, float]:
    """Insert synthetic cases [start, stop) with keys, bands and vectors, the link tables' indexes and
    constraints dropped during the load and rebuilt after it (then VACUUM ANALYZE / ANALYZE); returns seconds per phase."""
    t = time.perf_counter()
    now = datetime.now(UTC)
    rebuild = _drop_link_indexes(engine)
    t_drop = time.perf_counter()
    for lo in range(start, stop, chunk):
        rows = gen.rows(lo, min(stop, lo + chunk))
        if engine.dialect.name == "postgresql":
            _copy_pg(engine, rows, now)
        else:
            _executemany_sqlite(engine, rows, now)
        if (lo // chunk) % 10 == 0 or lo + chunk >= stop:
            print(f"  filled {min(stop, lo + chunk):,} ({time.perf_counter() - t_drop:.0f} s, load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)
    t_load = time.perf_counter()
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            c.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        for ddl in rebuild:
            t1 = time.perf_counter()
            c.exec_driver_sql(ddl)
            c.commit()
            print(f"  {time.perf_counter() - t1:6.1f} s  {ddl[:110]}", file=sys.stderr, flush=True)
        t_index = time.perf_counter()
        if engine.dialect.name != "postgresql":
            c.exec_driver_sql("ANALYZE")
            c.commit()
    if engine.dialect.name == "postgresql":  # VACUUM sets the visibility map: index-only scans as in a settled store
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(LINK_TABLES)}")
    t_end = time.perf_counter()
    return {"load_s": t_load - t, "index_s": t_index - t_load, "vacuum_analyze_s": t_end - t_index, "total_s": t_end - t}


LINK_TABLES = ("cases", "case_bands", "case_petitioner_keys", "case_vectors")


def _drop_link_indexes(engine: sa.Engine) -> list[str]:
    """Drop the secondary indexes and constraints of the case/link tables (cases keeps its primary key);
    return the DDL that recreates them exactly (unique/primary keys, then indexes, then foreign keys)."""
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            tables = ", ".join(f"'{t}'::regclass" for t in LINK_TABLES)
            cons = c.exec_driver_sql(
                f"SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                f"WHERE conrelid IN ({tables}) AND contype IN ('p', 'u', 'f') "
                f"AND NOT (conrelid = 'cases'::regclass AND contype = 'p')").all()
            idx = c.exec_driver_sql(
                f"SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid IN ({tables}) "
                f"AND indexrelid NOT IN (SELECT conindid FROM pg_constraint)").all()
            for tab, name, _, _ in sorted(cons, key=lambda r: r[2] != "f"):  # foreign keys first
                c.exec_driver_sql(f'ALTER TABLE {tab} DROP CONSTRAINT "{name}"')
            for name, _ in idx:
                c.exec_driver_sql(f'DROP INDEX "{name}"')
            return ([f'ALTER TABLE {tab} ADD CONSTRAINT "{name}" {d}' for tab, name, k, d in cons if k != "f"]
                    + [d for _, d in idx]
                    + [f'ALTER TABLE {tab} ADD CONSTRAINT "{name}" {d}' for tab, name, k, d in cons if k == "f"])
        rows = c.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN "
            f"({', '.join(repr(t) for t in LINK_TABLES)})").all()
        for name, _ in rows:
            c.exec_driver_sql(f'DROP INDEX "{name}"')
        return [ddl for _, ddl in rows]


def _case_tuple(r: dict[str, object], now: datetime) -> tuple[object, ...]:
    return (r["id"], r["text"], uuid.uuid4().hex + uuid.uuid4().hex, r["submitted_at"], "online", "auto", "P2", False,
            "bench", now, now, 1)


CASE_COLS = ("id, text, content_hash, submitted_at, channel, status, priority, confidential, source, created_at, "
             "updated_at, version")


def _band_lines(rows: list[dict[str, object]]) -> str:
    """COPY text for case_bands: one line per distinct (case, band)."""
    mat = np.stack([r["bands"] for r in rows])  # type: ignore[arg-type]
    srt = np.sort(mat, axis=1)
    if (srt[:, 1:] == srt[:, :-1]).any():  # a repeated band inside one case: keep the first only
        return "".join(f"{r['id']}\t{b}\n" for r in rows for b in dict.fromkeys(r["bands"].tolist()))  # type: ignore[union-attr]
    return "".join(f"{r['id']}\t{b}\n" for r, bs in zip(rows, mat.tolist(), strict=True) for b in bs)


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
                cp.write(_band_lines(rows))
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
        elif gen.table is not None:  # a table row no stored case uses (when the table is longer than the store)
            v = gen.table[len(gen.table) - 1 - q % max(1, len(gen.table) - stored)]
            yield [f"new-{q}"], [r.getrandbits(62) for _ in range(BANDS)], np.asarray(v, dtype=np.float32)
        else:
            v = np.random.default_rng(q).normal(size=gen.dim).astype(np.float32)
            yield [f"new-{q}"], [r.getrandbits(62) for _ in range(BANDS)], v / np.linalg.norm(v)


def _near(v: np.ndarray, q: int) -> np.ndarray:
    """A nearby unit vector (the same matter written again)."""
    w = v + 0.05 * _uniform(np.arange(v.shape[0], dtype=np.int64) + q * 10_000, 9).astype(np.float32)
    return (w / np.linalg.norm(w)).astype(np.float32)


class StatementLog:
    """Records the SQL statements of the query parts (PostgreSQL) to replay them under EXPLAIN ANALYZE."""

    def __init__(self, engine: sa.Engine) -> None:
        self.part: str | None = None
        self.q = -1  # the query the statements belong to
        self.seen: list[tuple[int, str, str, object]] = []
        sa.event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, conn: object, cursor: object, statement: str, parameters: object, context: object,
                    executemany: bool) -> None:
        if self.part is not None:
            self.seen.append((self.q, self.part, statement, parameters))

    def server_times(self, engine: sa.Engine) -> dict[str, dict[str, float]]:
        """Replay every recorded statement with EXPLAIN (ANALYZE, BUFFERS): per query and part, the summed
        server execution and planning times (not sensitive to client CPU contention)."""
        per: dict[tuple[int, str], list[float]] = {}
        with engine.connect() as c:
            for q, part, stmt, params in self.seen:
                plan = c.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {stmt}", params).scalar_one()  # type: ignore[arg-type]
                plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
                acc = per.setdefault((q, part), [0.0, 0.0])
                acc[0] += plan["Execution Time"]
                acc[1] += plan["Planning Time"]
            c.rollback()
        out: dict[str, dict[str, float]] = {}
        for part in dict.fromkeys(p for _, p in per):
            ex = [v[0] for (_, p), v in per.items() if p == part]
            pl = [v[1] for (_, p), v in per.items() if p == part]
            out[part] = {"exec_p50": _pct(ex, 50), "exec_p99": _pct(ex, 99), "exec_max": round(max(ex), 2),
                         "plan_p50": _pct(pl, 50), "n": len(ex)}
        return out


def _pct(v: list[float], q: float) -> float:
    return round(float(np.percentile(v, q)), 2)


def measure_queries(index: SqlCaseIndex, capped: SqlCaseIndex | None, gen: Generator, stored: int, n: int,
                    log: StatementLog | None = None, explain: int = 0) -> dict[str, Any]:
    """The linker's candidate step (CaseLinker.candidates), two ways on the same features, alternated (which one runs
    first flips every query):

    * per channel, as before run 6: petitioner cases, band candidates, vector candidates with the linker's default
      limits, then snapshots of the union (parts "petitioner" … "snapshots", "total"); `capped` (optional) runs the
      band query with a per-band fan-out cap on the same features, `total_capped` is the total with it instead;
    * the product path since run 6, `SqlCaseIndex.candidate_snapshots` (one pinned connection; PostgreSQL: two
      statements): "link_total", and on PostgreSQL its parts "link_gather" (petitioner + bands + max(seq)),
      "link_vectors" (faiss), "link_snapshots" (seq lookup + snapshots). "link_mismatch" counts the queries where the
      two ways returned different snapshots (0 expected)."""
    lim = CandidateLimits()
    parts: dict[str, list[float]] = {"petitioner": [], "bands": [], "vectors": [], "snapshots": [], "total": [],
                                     "candidates": []}
    if capped is not None:
        parts["bands_capped"], parts["total_capped"] = [], []
    for name in ("link_gather", "link_vectors", "link_snapshots", "link_total"):
        parts[name] = []
    mismatch = 0
    # Contention probes timed between queries: a fixed single-threaded pure-Python job (~0.3 ms on an idle core)
    # and a bare `SELECT 1` round trip. Their p50/p99 show what the busy machine adds, whatever the store size.
    parts["probe_cpu"], parts["probe_select1"] = [], []
    probe_engine = index.store.engine.execution_options(isolation_level="AUTOCOMMIT")
    for q, (keys, bands, vec) in enumerate(queries(gen, stored, n)):
        t = time.perf_counter()
        sum(range(20_000))
        t1 = time.perf_counter()
        with probe_engine.connect() as pc_:
            pc_.exec_driver_sql("SELECT 1").all()
        parts["probe_cpu"].append((t1 - t) * 1000)
        parts["probe_select1"].append((time.perf_counter() - t1) * 1000)
        rec = log is not None and q < explain
        if log is not None:
            log.q = q
        if q % 2:
            fused = _link_step(index, keys, bands, vec, lim, parts, log if rec else None)
        if rec:
            log.part = "petitioner"  # type: ignore[union-attr]
        t0 = time.perf_counter()
        pc = index.petitioner_cases(keys, limit=lim.petitioner)
        t1 = time.perf_counter()
        if rec:
            log.part = "bands"  # type: ignore[union-attr]
        bc = index.band_candidates(bands, limit=lim.bands)
        t2 = time.perf_counter()
        if rec:
            log.part = "vectors"  # type: ignore[union-attr]
        vc = index.vector_candidates(vec, k=lim.vectors)
        t3 = time.perf_counter()
        if rec:
            log.part = "snapshots"  # type: ignore[union-attr]
        ids = list(dict.fromkeys([*pc, *(c for c, _ in bc), *(c for c, _ in vc)]))
        snaps = index.snapshots(ids)
        t4 = time.perf_counter()
        if rec and capped is not None:
            log.part = "bands_capped"  # type: ignore[union-attr]
        if capped is not None:
            capped.band_candidates(bands, limit=lim.bands)
            t5 = time.perf_counter()
            parts["bands_capped"].append((t5 - t4) * 1000)
            parts["total_capped"].append((t4 - t0 - (t2 - t1) + (t5 - t4)) * 1000)
        if log is not None:
            log.part = None
        if not q % 2:
            fused = _link_step(index, keys, bands, vec, lim, parts, log if rec else None)
        mismatch += fused != snaps
        assert len(snaps) == len(ids)
        for name, dt in (("petitioner", t1 - t0), ("bands", t2 - t1), ("vectors", t3 - t2), ("snapshots", t4 - t3),
                         ("total", t4 - t0)):
            parts[name].append(dt * 1000)
        parts["candidates"].append(len(ids))
    out: dict[str, Any] = {k: {"p50": _pct(v, 50), "p99": _pct(v, 99), "max": round(max(v), 2)} for k, v in parts.items() if v}
    out["link_mismatch"] = mismatch
    return out


def _link_step(index: SqlCaseIndex, keys: list[str], bands: list[int], vec: np.ndarray, lim: CandidateLimits,
               parts: dict[str, list[float]], log: StatementLog | None) -> list[CaseSnapshot]:
    """One `candidate_snapshots` call (the product path), timed."""
    timings: dict[str, float] = {}
    if log is not None:
        log.part = "link"
    t = time.perf_counter()
    snaps = index.candidate_snapshots(keys, bands, vec, lim, timings=timings)
    parts["link_total"].append((time.perf_counter() - t) * 1000)
    if log is not None:
        log.part = None
    for name, ms in timings.items():
        parts[f"link_{name}"].append(ms)
    return snaps


def vector_recall(index: SqlCaseIndex, gen: Generator, stored: int, n: int = 100, k: int = 30) -> dict[str, float] | None:
    """Recall of the mirror's IVF against exact search over the same vectors: of the exact top k, and of the
    exact top 3 within the approximate top k. Synthetic vectors (random cluster centres, no coarse structure)
    are close to the worst case for IVF: a property of the index on this data, not a linking-quality figure.
    None while the mirror is exact."""
    m = index.vectors
    if m.kind != "ivf":
        return None
    qs = np.stack([vec for _, _, vec in queries(gen, stored, n, seed=23)])
    ivf = faiss.extract_index_ivf(m.index)
    old = ivf.nprobe
    ivf.nprobe = ivf.nlist  # exhaustive = exact over the same stored vectors
    _, exact = m.index.search(qs, k)
    ivf.nprobe = old
    _, approx = m.index.search(qs, k)
    return {f"recall_at_{k}": round(float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)])), 3),
            f"top3_in_{k}": round(float(np.mean([len(set(a) & set(e[:3])) / 3 for a, e in zip(approx, exact, strict=True)])), 3),
            "nprobe": old}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=512, help="vector dimension (the linker's hashed TF-IDF encoder: 512)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--explain", type=int, default=300, help="PostgreSQL: replay the first N queries under EXPLAIN ANALYZE")
    ap.add_argument("--writes", type=int, default=2_000, help="cases written through the product path per size")
    ap.add_argument("--hot-fraction", type=float, default=0.02,
                    help="share of cases in 20 mass-petition 'campaigns' sharing 24 band values (hot bands)")
    ap.add_argument("--band-fanout", type=int, default=200, help="also time the band query capped at N cases per band")
    ap.add_argument("--nprobe", type=int, help="IVF lists probed per vector query (default: the codec's, DEFAULT_NPROBE)")
    ap.add_argument("--pg-admin", default=os.environ.get("TRIAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--pg-db", help="database name (default triage_bench_<pid>); an existing one is reused and topped up")
    ap.add_argument("--sqlite-path", help="SQLite file (default: a temporary directory); an existing one is reused")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--index-dir", type=Path,
                    help="persist the mirror's IVF base here (memory-mapped, shared by workers); default: in memory")
    ap.add_argument("--codec", choices=["PQfs", "SQ8", "Flat"], default="PQfs", help="IVF codes of the vector mirror")
    ap.add_argument("--vectors-npy", type=Path,
                    help="case vectors from this .npy (row i for case i, mod its length) instead of synthetic ones")
    ap.add_argument("--worker-probe", nargs=2, metavar=("URL", "STORED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_probe:
        worker_probe(args.worker_probe[0], str(args.index_dir), args.codec, args.nprobe, args.dim, int(args.worker_probe[1]),
                     vectors_npy=args.vectors_npy)
        return

    tmp = tempfile.TemporaryDirectory(prefix="store_scale_")
    admin = None
    if args.backend == "sqlite":
        url = f"sqlite:///{args.sqlite_path or tmp.name + '/bench.db'}"
    else:
        admin = sa.create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
        name = args.pg_db or f"triage_bench_{os.getpid()}"
        with admin.connect() as c:
            if not c.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).first():
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    store = CaseStore(engine, pii_secret=SECRET)
    gen = Generator(args.dim, hot_fraction=args.hot_fraction, vectors_npy=args.vectors_npy)
    log = StatementLog(engine) if engine.dialect.name == "postgresql" and args.explain else None
    with engine.connect() as c:
        filled = c.execute(sa.text("SELECT count(*) FROM cases WHERE id LIKE 'SYN-%'")).scalar_one()
    try:
        for size in sorted(args.sizes):
            target = size - args.writes
            fill = bulk_fill(engine, gen, filled, target) if target > filled else None
            fill_rate = (target - filled) / fill["total_s"] if fill else None
            filled = max(filled, target)
            load_w = os.getloadavg()[0]
            write_rate = product_writes(store, gen, 10**8 + size, args.writes)
            with engine.begin() as c:
                c.exec_driver_sql("ANALYZE")
            stored = store.count_cases()
            rss0 = rss_mb()
            index = SqlCaseIndex(store, nprobe=args.nprobe, band_fanout=None,  # the band query uncapped: "bands"
                                 index_dir=args.index_dir, codec=args.codec)
            capped = SqlCaseIndex(store, band_fanout=args.band_fanout) if args.band_fanout else None
            t = time.perf_counter()
            index.vectors.refresh()
            mirror_s = time.perf_counter() - t
            rss1 = rss_mb()
            worker = None
            if args.index_dir is not None:  # one more worker starting now (the base exists): a separate process
                cmd = [sys.executable, __file__, "--backend", args.backend, "--worker-probe", url, str(filled),
                       "--index-dir", str(args.index_dir), "--codec", args.codec,
                       "--dim", str(args.dim)] + (["--vectors-npy", str(args.vectors_npy)] if args.vectors_npy else [])
                cmd += ["--nprobe", str(args.nprobe)] if args.nprobe else []
                worker = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            load_q = os.getloadavg()[0]
            if log is not None:
                log.seen.clear()
            t = time.perf_counter()
            lat = measure_queries(index, capped, gen, filled, args.queries, log, args.explain)
            query_s = time.perf_counter() - t
            load_q2 = os.getloadavg()[0]
            server = log.server_times(engine) if log is not None else None
            recall = vector_recall(index, gen, filled)
            with engine.connect() as c:
                if engine.dialect.name == "postgresql":
                    db_mb = c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one() / 2**20
                else:
                    db_mb = Path(engine.url.database or "").stat().st_size / 2**20
                hot_values = gen.hot_bands()
                hot_q = sa.text("SELECT max(n) FROM (SELECT count(*) AS n FROM case_bands WHERE band IN :b GROUP BY band) x")
                hot_q = hot_q.bindparams(sa.bindparam("b", expanding=True))
                hot = c.execute(hot_q, {"b": hot_values}).scalar() if hot_values else None
            out = {"backend": args.backend, "cases": stored, "dim": args.dim, "hot_fraction": args.hot_fraction,
                   "largest_band_cases": hot, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                   "bulk_fill_cases_per_s": round(fill_rate) if fill_rate else None,
                   "bulk_fill_s": {k: round(v, 1) for k, v in fill.items()} if fill else None,
                   "product_writes_cases_per_s": round(write_rate, 1), "load_writes": round(load_w, 1),
                   "mirror_load_s": round(mirror_s, 2), "mirror_kind": index.vectors.kind, "mirror_codec": args.codec,
                   "mirror_persisted": str(index.vectors.persisted) if index.vectors.persisted else None,
                   "nprobe": index.vectors.nprobe, "second_worker": worker,
                   "mirror_nlist": faiss.extract_index_ivf(index.vectors.index).nlist if index.vectors.kind == "ivf" else None,
                   "ivf_recall": recall, "vectors_npy": str(args.vectors_npy) if args.vectors_npy else None,
                   "rss_mb_before_mirror": round(rss0), "rss_mb_after_mirror": round(rss1), "db_mb": round(db_mb),
                   "queries": args.queries, "query_wall_s": round(query_s, 1),
                   "load_queries": [round(load_q, 1), round(load_q2, 1)],
                   "query_ms": lat, "server_ms": server}
            print(json.dumps(out, ensure_ascii=False), flush=True)
            del index, capped
    finally:
        engine.dispose()
        if admin is not None and not args.keep:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{engine.url.database}" WITH (FORCE)')
            admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
