"""SqlCaseIndex: the linker's CaseIndex (triage/linking/index.py) over the case store.

* petitioner keys and MinHash band hashes are tables (`case_petitioner_keys`, `case_bands`)
  queried with an index: every API worker sees the same data, and it scales with the database;
* vectors live in `case_vectors`, mirrored by faiss inner-product indexes (VectorMirror: exact
  `IndexFlatIP` up to `ann_threshold` vectors; above it an IVF base — 4-bit PQ fast-scan lists re-ranked on
  8-bit codes by default — persisted and opened memory-mapped by every worker when an index directory is
  given — plus an exact delta). Before
  each vector query the mirror checks `max(seq)` (one index lookup) and pulls only rows with a
  larger seq, so several worker processes stay consistent with the store without talking to each
  other. Writers make seqs visible in commit order (see CaseStore._lock_vectors), so no row is skipped.
* the linker's whole candidate step is one call, `SqlCaseIndex.candidate_snapshots`: one connection check-out and,
  on PostgreSQL, two statements (petitioner cases + band candidates + max(seq); then, after the faiss search, the
  snapshots with the base's hit seqs resolved) — it was five check-outs and five statements (bench/README.md, run 6).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sqlalchemy import BigInteger, ColumnElement, String, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from triage.linking.index import CandidateLimits, CaseSnapshot, LinkFeatures, gather_candidates
from triage.schemas import Entities, Petition
from triage.store.models import Case, CaseBand, CasePetitionerKey, CaseVector
from triage.store.repository import CaseStore

logger = logging.getLogger(__name__)

# IN lists are sent in chunks (SQLite's default limit on bound parameters is 32766; keep plans simple).
_IN_CHUNK = 900


# The connection (PostgreSQL) or read session (SQLite) pinned for one candidate step (SqlCaseIndex._pinned): every
# link read of that step runs on it — one pool check-out (one `pool_pre_ping`) per link query instead of one per read.
_PINNED: ContextVar[tuple[CaseStore, Any] | None] = ContextVar("triage_link_reads", default=None)


@contextmanager
def _single_reads(store: CaseStore) -> Iterator[Any]:
    """Where the link queries run. On PostgreSQL an autocommit connection: each statement is consistent by
    itself, and the BEGIN/ROLLBACK round trips of a read transaction are gone (they were most of the cost
    of a link query on busy cores). Elsewhere the store's read transaction. Inside `SqlCaseIndex._pinned`
    the pinned one."""
    pinned = _PINNED.get()
    if pinned is not None and pinned[0] is store:
        yield pinned[1]
        return
    if store.engine.dialect.name == "postgresql":
        store.ensure_ready()
        with store.engine.connect() as c:
            yield c.execution_options(isolation_level="AUTOCOMMIT")
    else:
        with store.read() as s:
            yield s


@functools.lru_cache(maxsize=64)
def _sqlite_bands_capped(n: int) -> Any:
    ranges = " UNION ALL ".join(
        f"SELECT case_id FROM (SELECT case_id FROM case_bands WHERE band = :b{i} ORDER BY case_id DESC LIMIT :fanout)"
        for i in range(n))
    return text(f"SELECT case_id, count(*) AS n FROM ({ranges}) GROUP BY case_id ORDER BY n DESC, case_id LIMIT :lim")


def _in(pg: bool, col: Any, values: Sequence[Any], item_type: Any) -> ColumnElement[bool]:
    """`col IN (values)`; on PostgreSQL `col = ANY(:array)`: one parameter, so the SQL text (and the
    prepared statement psycopg keeps for it) is the same whatever the number of values."""
    if pg:
        return col == func.any(bindparam(None, list(values), type_=ARRAY(item_type)))  # type: ignore[no-any-return]
    return col.in_(values)  # type: ignore[no-any-return]


# Per-band capped candidates on PostgreSQL: one LATERAL index range per band value.
_PG_BANDS_CAPPED = text(
    "SELECT c.case_id, count(*) AS n FROM unnest(CAST(:bands AS BIGINT[])) AS b(band) "
    "CROSS JOIN LATERAL (SELECT cb.case_id FROM case_bands cb WHERE cb.band = b.band "
    "ORDER BY cb.case_id DESC LIMIT :fanout) AS c "
    "GROUP BY c.case_id ORDER BY n DESC, c.case_id LIMIT :lim")


# The candidate step on PostgreSQL in two statements (SqlCaseIndex.candidate_snapshots). First: the petitioner cases
# (src 0), the band candidates (src 1) and the vector table's max(seq) (src 2, the mirror's freshness check), each
# with its rank `o` in the order the per-channel methods return.
_PG_GATHER_PETITIONER = (
    "SELECT 0 AS src, p.id AS case_id, p.o FROM (SELECT c.id, row_number() OVER "
    "(ORDER BY c.submitted_at DESC NULLS LAST, c.created_at DESC, c.id) AS o FROM cases c WHERE c.id IN "
    "(SELECT k.case_id FROM case_petitioner_keys k WHERE k.key = ANY(CAST(:keys AS VARCHAR[]))) ORDER BY o LIMIT :plim) AS p")
_PG_GATHER_BANDS = (
    "SELECT 1, b.case_id, b.o FROM (SELECT case_id, row_number() OVER (ORDER BY count(*) DESC, case_id) AS o "
    "FROM case_bands WHERE band = ANY(CAST(:bands AS BIGINT[])) GROUP BY case_id ORDER BY o LIMIT :blim) AS b")
_PG_GATHER_BANDS_CAPPED = (
    "SELECT 1, b.case_id, b.o FROM (SELECT c.case_id, row_number() OVER (ORDER BY count(*) DESC, c.case_id) AS o "
    "FROM unnest(CAST(:bands AS BIGINT[])) AS u(band) CROSS JOIN LATERAL (SELECT cb.case_id FROM case_bands cb "
    "WHERE cb.band = u.band ORDER BY cb.case_id DESC LIMIT :fanout) AS c GROUP BY c.case_id ORDER BY o LIMIT :blim) AS b")
_PG_GATHER_TOP = "SELECT 2, NULL, (SELECT max(seq) FROM case_vectors)"


@functools.lru_cache(maxsize=4)
def _pg_gather(capped: bool, with_top: bool) -> Any:
    parts = [_PG_GATHER_PETITIONER, _PG_GATHER_BANDS_CAPPED if capped else _PG_GATHER_BANDS]
    return text(" UNION ALL ".join(parts + [_PG_GATHER_TOP] * with_top))


# Second: the snapshots of the petitioner/band ids and of the k best vector hits — the delta's by case id, the
# base's by seq, resolved in the same statement (`seq` set on the rows a hit names; a replaced row's old seq names
# nothing) — plus, without snapshot (text NULL), the case ids of the base's spare hits.
_PG_SNAPSHOTS = text(
    "SELECT c.id, c.text, c.entities, c.submitted_at, c.status, c.district, c.subdivision, "
    "(SELECT array_agg(k.key) FROM case_petitioner_keys k WHERE k.case_id = c.id) AS keys, v.seq "
    "FROM cases c LEFT JOIN case_vectors v ON v.case_id = c.id AND v.seq = ANY(CAST(:seqs AS BIGINT[])) "
    "WHERE c.id = ANY(CAST(:ids AS VARCHAR[]) || "
    "ARRAY(SELECT cv.case_id FROM case_vectors cv WHERE cv.seq = ANY(CAST(:seqs AS BIGINT[])))) "
    "UNION ALL SELECT s.case_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.seq FROM case_vectors s "
    "WHERE s.seq = ANY(CAST(:spare AS BIGINT[]))"
).columns(Case.id, Case.text, Case.entities, Case.submitted_at, Case.status, Case.district, Case.subdivision,
          keys=ARRAY(String), seq=BigInteger)


def _snapshot(row: Sequence[Any], keys: Sequence[str]) -> CaseSnapshot:
    cid, text_, ents, at, status, district, sub = row[:7]
    return CaseSnapshot(case_id=cid, text=text_, entities=Entities.model_validate(ents) if ents else Entities(),
                        petitioner_keys=tuple(sorted(keys)), submitted_at=at, status=status, district=district,
                        subdivision=sub)


def merge_hits(delta: list[tuple[str, float]], base: list[tuple[int, float]], names: dict[int, str],
               k: int) -> list[tuple[str, float]]:
    """The mirror's k best (case id, cosine): the delta's hits and the base's whose seq the store still names."""
    out = delta + [(names[seq], score) for seq, score in base if seq in names]
    out.sort(key=lambda cs: -cs[1])
    return out[:k]


def build_ivf(mat: np.ndarray, ids: np.ndarray, *, codec: str = "PQfs", nlist: int | None = None, niter: int = 10,
              points_per_centroid: int = 40) -> Any:
    """The mirror's IVF base over these vectors (inner product), ids = seqs. nlist ≈ √n for "PQfs", 2·√n for
    "SQ8"/"Flat" (at least 64, at most 4096), k-means on
    `points_per_centroid` points per list, `niter` iterations (at 1M × 512 the former 4·√n lists trained on 64 points
    each, 25 iterations, cost ~2.6e13 flops: tens of minutes here).

    codec: "SQ8" / "Flat" — the lists hold 8-bit / float32 codes; "PQfs" — the lists hold 4-bit PQ fast-scan codes
    (dim/4 sub-quantizers: 64 bytes per 512-d vector, scanned with SIMD table lookups), and the candidates they give
    are re-ranked on 8-bit codes (an `IndexRefine` over an `IndexScalarQuantizer`; `refine_factor` × k candidates),
    the whole behind an `IndexIDMap` (the refine step needs positions, the mirror seqs)."""
    n, dim = mat.shape
    if nlist is None:
        nlist = int(min(4096, max(64, (1 if codec == "PQfs" else 2) * np.sqrt(n)), n))
    rng = np.random.default_rng(0)
    sample = np.ascontiguousarray(mat[np.sort(rng.choice(n, size=min(n, points_per_centroid * nlist), replace=False))])
    if codec == "PQfs":
        ivf = faiss.index_factory(dim, f"IVF{nlist},PQ{dim // 4}x4fs", faiss.METRIC_INNER_PRODUCT)
        refine = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIDMap(faiss.IndexRefine(ivf, refine))
    else:
        index = faiss.index_factory(dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = niter
    ivf.cp.max_points_per_centroid = points_per_centroid
    index.train(sample)
    for lo in range(0, n, 200_000):  # (in slices: the float32 copy faiss makes for adding stays small)
        index.add_with_ids(np.ascontiguousarray(mat[lo:lo + 200_000]), np.ascontiguousarray(ids[lo:lo + 200_000], dtype=np.int64))
    logger.info("vector mirror IVF built: %d vectors, nlist=%d, codec=%s", n, nlist, codec)
    return index


def set_search_params(index: Any, nprobe: int, refine_factor: int = 10) -> None:
    """nprobe of the IVF inside `index` (and the candidates re-ranked, for a "PQfs" base)."""
    faiss.extract_index_ivf(index).nprobe = nprobe
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexRefine):
        inner.k_factor = refine_factor


# lists probed per query when none is given (serving: TRIAGE_LINK_NPROBE): fast-scan codes are ~8× cheaper to scan
DEFAULT_NPROBE = {"PQfs": 512, "SQ8": 32, "Flat": 32}


class VectorMirror:
    """A faiss copy of `case_vectors`, refreshed incrementally by seq.

    Two parts, searched together:

    * a **base**: an inverted-file index, built once the store holds more than `ann_threshold` vectors
      (`build_ivf`). By default ("PQfs") nlist ≈ √n lists of 4-bit PQ fast-scan codes (64 bytes per vector),
      `nprobe` 512 of them scanned (at 1M: half the lists; below ~260k: all of them), the best
      `refine_factor`·k re-ranked on 8-bit codes: on realistic 1M-case vectors it finds the repeated case for
      65% of dev re-submissions (exact search 71%) where IVF-SQ8 at nprobe 32 found 38%, at 2–4 ms single-thread
      (bench/README.md, run 5). "SQ8" (`IVF{2·√n},SQ8`, nprobe 32) and "Flat" remain.
      Its ids are seqs; a seq is turned back into a case id by the store (one primary-key query per
      search), so rows replaced or deleted since the base was built are simply not found.
      With `index_dir` the base is persisted (`vectors-<store key>-<seq>.faiss`, plus a `.json` naming the
      current file) and opened **memory-mapped, read-only**: every worker of the machine shares the same page
      cache pages, and a worker starts in milliseconds instead of reading and indexing every stored vector
      ("PQfs": the 8-bit re-ranking codes are mapped; the fast-scan lists — 64 bytes per vector, plus 8 for its
      seq — are read into each worker, ~75 MB at 1M). The first worker to find no usable file builds it, under a
      file lock (the others wait, then open it).
    * a **delta**: the rows with a larger seq than the base's, in memory, searched exactly (`IndexFlatIP`).
      Below `ann_threshold` this is the whole mirror (exact search). When it holds more than `compact_after`
      rows it is folded into the base: in memory directly; with `index_dir` a background thread writes a new
      file (the current one loaded, the delta added) and the workers switch to it.

    Before each query the mirror checks `max(seq)` (one index lookup) and pulls only newer rows, so several
    worker processes stay consistent with the store without talking to each other. Writers make seqs visible
    in commit order (see CaseStore._lock_vectors), so no row is skipped.
    """

    def __init__(self, store: CaseStore, *, ann_threshold: int = 50_000, nprobe: int | None = None,
                 faiss_threads: int | None = 1, index_dir: Path | None = None, codec: str = "PQfs",
                 compact_after: int = 20_000, refine_factor: int = 10) -> None:
        if faiss_threads is not None:
            # Process-wide: one query at a time gains nothing from OpenMP, and on busy cores its spinning
            # threads cost tens of milliseconds at p99 (measured: p99 37 ms vs 0.6 ms on 5k vectors, 2 cores).
            faiss.omp_set_num_threads(faiss_threads)
        if codec not in ("SQ8", "Flat", "PQfs"):
            raise ValueError(f"unknown vector codec {codec!r} (SQ8, Flat or PQfs)")
        self.faiss_threads = faiss_threads
        self.store = store
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe if nprobe is not None else DEFAULT_NPROBE[codec]
        self.codec = codec
        self.refine_factor = refine_factor
        self.compact_after = compact_after
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self._lock = threading.RLock()
        self._compactor: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self.dim: int | None = None
        self.base: Any = None  # IVF over seqs ≤ base_seq (memory-mapped when persisted)
        self.base_seq = 0
        self.persisted: Path | None = None  # the base's file, when memory-mapped
        self._base_tried = False
        self.delta: Any = None  # IndexIDMap(IndexFlatIP) over seqs > base_seq
        self.last_seq = 0
        self._seq_case: dict[int, str] = {}  # delta rows only
        self._case_seq: dict[str, int] = {}
        self._skipped_dim = 0

    @property
    def kind(self) -> str:
        """empty | flat (exact, delta only) | ivf (a base, plus the delta)."""
        return "ivf" if self.base is not None else "flat" if self.delta is not None else "empty"

    @property
    def index(self) -> Any:
        """The base IVF when there is one, else the exact delta index."""
        return self.base if self.base is not None else self.delta

    def __len__(self) -> int:
        """Vectors searchable (the base counts rows replaced since it was built until it is rebuilt)."""
        return (self.base.ntotal if self.base is not None else 0) + len(self._case_seq)

    # --- loading ----------------------------------------------------------------------------------------
    def _read(self, s: Any, after: int, upto: int) -> tuple[list[int], list[str], np.ndarray | None]:
        """Rows after < seq ≤ upto of the wanted dimension, straight into one preallocated matrix (at 1M × 512
        a list of bytes plus their join held two extra copies, ~4 GB, at start-up)."""
        seqs: list[int] = []
        ids: list[str] = []
        mat: np.ndarray | None = None
        q = (select(CaseVector.seq, CaseVector.case_id, CaseVector.dim, CaseVector.vector)
             .where(CaseVector.seq > after, CaseVector.seq <= upto).order_by(CaseVector.seq))
        for seq, case_id, dim, blob in s.execute(q.execution_options(yield_per=20_000)):
            if self.dim is None:
                self.dim = int(dim)
            if dim != self.dim:
                self._skipped_dim += 1
                continue
            if mat is None:
                mat = np.empty((upto - after, self.dim), dtype=np.float32)
            mat[len(seqs)] = np.frombuffer(blob, dtype=np.float32)
            seqs.append(seq)
            ids.append(case_id)
        return seqs, ids, (mat[:len(seqs)] if mat is not None else None)

    def refresh(self, top: int | None = None) -> int:
        """Pull vectors added since the last refresh; returns how many were added. `top`: the table's max(seq) when the
        caller has just read it (SqlCaseIndex.candidate_snapshots reads it with the band query): no statement when
        nothing is new."""
        with self._lock:
            if top is not None and top == self.last_seq:
                return 0
            if top is None and self.store.engine.dialect.name == "postgresql":
                with _single_reads(self.store) as c:  # the common case: nothing new, one autocommit statement
                    if (c.scalar(select(func.max(CaseVector.seq))) or 0) == self.last_seq:
                        return 0
            # (SQLite: the read transaction below makes the same check first; a second session cost as much.)
            with self.store.read() as s:
                top = s.scalar(select(func.max(CaseVector.seq))) or 0
                if top == self.last_seq:
                    return 0
                if top < self.last_seq:  # the table was rebuilt (restore, tests): start over
                    logger.warning("case_vectors max seq went back from %d to %d: rebuilding the mirror", self.last_seq, top)
                    self._reset()
                opened = 0
                if self.index_dir is not None and self.base is None and not self._base_tried:
                    self._base_tried = True
                    self._open_or_build_file(s, top)
                    opened = self.base.ntotal if self.base is not None else 0
                seqs, ids, mat = self._read(s, self.last_seq, top)
            added = opened + self._add_delta(seqs, ids, mat)
            self.last_seq = top
            if self._skipped_dim:
                logger.warning("%d stored vectors have a dimension other than %s and are not searchable "
                               "(re-run ingest with the current linker encoder)", self._skipped_dim, self.dim)
            self._maybe_compact()
            return added

    def _add_delta(self, seqs: list[int], ids: list[str], mat: np.ndarray | None) -> int:
        if not seqs or mat is None:
            return 0
        assert self.dim is not None
        if self.delta is None:
            self.delta = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))
        for seq, case_id in zip(seqs, ids, strict=True):
            old = self._case_seq.get(case_id)
            if old is not None:
                self._seq_case.pop(old, None)  # the stale entry stays in faiss; filtered out at query time
            self._case_seq[case_id] = seq
            self._seq_case[seq] = case_id
        self.delta.add_with_ids(np.ascontiguousarray(mat), np.asarray(seqs, dtype=np.int64))
        return len(seqs)

    def _delta_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(seqs, vectors) of the live delta rows, by seq."""
        seqs = np.fromiter(sorted(self._seq_case), dtype=np.int64, count=len(self._seq_case))
        if not len(seqs):
            return seqs, np.empty((0, self.dim or 0), dtype=np.float32)
        all_ids = faiss.vector_to_array(self.delta.id_map).astype(np.int64)
        pos = {int(s): i for i, s in enumerate(all_ids)}
        mat = self.delta.index.reconstruct_n(0, self.delta.ntotal)
        return seqs, mat[[pos[int(s)] for s in seqs]]

    def _keep_delta_after(self, seq: int) -> None:
        """Drop delta rows with a seq ≤ `seq` (they are in the base now)."""
        seqs, mat = self._delta_rows()
        keep = seqs > seq
        ids = [self._seq_case[int(s)] for s in seqs[keep]]
        self.delta, self._seq_case, self._case_seq = None, {}, {}
        self._add_delta([int(s) for s in seqs[keep]], ids, mat[keep])

    def _maybe_compact(self) -> None:
        n = len(self._seq_case)
        if self.base is None:
            if n > self.ann_threshold and self.index_dir is None:  # (with a directory: built on open, see below)
                seqs, mat = self._delta_rows()
                with self._threads(n):
                    self.base = self._train(mat, seqs)
                self.base_seq = self.last_seq
                self.delta, self._seq_case, self._case_seq = None, {}, {}
            elif n > self.ann_threshold:
                with self.store.read() as s:
                    self._open_or_build_file(s, self.last_seq)
                self._keep_delta_after(self.base_seq)
            return
        if n <= self.compact_after:
            return
        if self.index_dir is None:
            seqs, mat = self._delta_rows()
            with self._threads(n):
                self.base.add_with_ids(mat, seqs)
            self.base_seq = self.last_seq
            self.delta, self._seq_case, self._case_seq = None, {}, {}
        elif self._compactor is None or not self._compactor.is_alive():
            seqs, mat = self._delta_rows()
            self._compactor = threading.Thread(target=self._compact_file, args=(seqs, mat, self.last_seq),
                                               name="vector-compactor", daemon=True)
            self._compactor.start()

    def _train(self, mat: np.ndarray, seqs: np.ndarray) -> Any:
        assert self.dim is not None
        index = build_ivf(mat, seqs, codec=self.codec)
        set_search_params(index, self.nprobe, self.refine_factor)
        return index

    # --- the persisted base ---------------------------------------------------------------------------------
    def _key(self) -> str:
        url = self.store.engine.url.render_as_string(hide_password=True)
        return hashlib.sha256(f"{url}|{self.codec}".encode()).hexdigest()[:16]

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.index_dir is not None
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with open(self.index_dir / f"vectors-{self._key()}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _meta_path(self) -> Path:
        assert self.index_dir is not None
        return self.index_dir / f"vectors-{self._key()}.json"

    def _valid_meta(self, s: Any, top: int) -> dict[str, Any] | None:
        """The current file's description if it belongs to this store as it is now (its last row still there)."""
        try:
            meta = json.loads(self._meta_path().read_text())
            path = self._meta_path().parent / meta["file"]
            if not path.exists() or meta["seq"] > top or (self.dim is not None and meta["dim"] != self.dim):
                return None
            if s.scalar(select(CaseVector.case_id).where(CaseVector.seq == meta["seq"])) != meta["case_id"]:
                return None
            return dict(meta)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _open(self, meta: dict[str, Any]) -> None:
        path = self._meta_path().parent / meta["file"]
        # (PQfs: the 8-bit re-ranking codes are a flat array, mapped with IO_FLAG_MMAP_IFC; the fast-scan lists are read)
        flags = faiss.IO_FLAG_MMAP_IFC if self.codec == "PQfs" else faiss.IO_FLAG_MMAP
        base = faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY)
        set_search_params(base, self.nprobe, self.refine_factor)
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(base).invlists)
        if isinstance(lists, faiss.OnDiskInvertedLists):
            # (SQ8/Flat files open as OnDiskInvertedLists, which start 32 threads per search to prefetch the probed lists:
            # on 2 busy cores that stalled the whole process — `SELECT 1` p99 39–82 ms in every SQ8 run of runs 5–6)
            lists.prefetch_nthread = 0
        if self.codec == "PQfs":
            # Map every page of the 8-bit codes now (one scan of them: 0.2 s at 1M): otherwise each of a new worker's
            # first thousands of queries faults in the ~400 random pages it re-ranks (a fresh process on this VM: 8–11 ms
            # a query over its first 600 queries, 2.8–3.0 ms after this scan)
            refine = faiss.downcast_index(faiss.downcast_index(base.index).refine_index)
            refine.search(np.zeros((1, refine.d), dtype=np.float32), 1)
        self.base, self.base_seq, self.persisted, self.dim = base, int(meta["seq"]), path, int(meta["dim"])

    def _write(self, index: Any, seq: int, case_id: str) -> dict[str, Any]:
        """Write the file, then (atomically) the .json naming it; older files are removed (mappings stay valid)."""
        assert self.index_dir is not None and self.dim is not None
        key = self._key()
        name = f"vectors-{key}-{seq}.faiss"
        tmp = self.index_dir / f".{name}.{os.getpid()}.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self.index_dir / name)
        meta = {"file": name, "seq": seq, "case_id": case_id, "dim": self.dim, "ntotal": int(index.ntotal),
                "codec": self.codec, "nlist": int(faiss.extract_index_ivf(index).nlist)}
        tmp_meta = self.index_dir / f".vectors-{key}.json.{os.getpid()}.tmp"
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, self._meta_path())
        for old in self.index_dir.glob(f"vectors-{key}-*.faiss"):
            if old.name != name:
                old.unlink(missing_ok=True)
        return meta

    def _open_or_build_file(self, s: Any, top: int) -> None:
        """Open the store's persisted base, or build it (when over the threshold) — under the file lock."""
        with self._file_lock():
            meta = self._valid_meta(s, top)
            if meta is None:
                if (s.scalar(select(func.count()).select_from(CaseVector)) or 0) <= self.ann_threshold:
                    return
                t = time.perf_counter()
                seqs, ids, mat = self._read(s, 0, top)
                if mat is None:
                    return
                with self._threads(len(seqs)):
                    index = self._train(mat, np.asarray(seqs, dtype=np.int64))
                del mat
                meta = self._write(index, seqs[-1], ids[-1])
                del index
                logger.info("vector mirror: base of %d vectors written in %.1f s", meta["ntotal"], time.perf_counter() - t)
            self._open(meta)
        self.last_seq = max(self.last_seq, self.base_seq)

    def _compact_file(self, seqs: np.ndarray, mat: np.ndarray, upto: int) -> None:
        """(Background thread.) A new base file with the delta rows added; then switch to it."""
        try:
            with self.store.read() as s, self._file_lock():
                meta = self._valid_meta(s, upto)
                if meta is None:
                    logger.warning("vector mirror: persisted base gone or stale; not compacted")
                    return
                if meta["seq"] < upto:
                    index = faiss.read_index(str(self._meta_path().parent / meta["file"]))  # into memory, writable
                    keep = seqs > meta["seq"]
                    if not keep.any():
                        return
                    with self._threads(int(keep.sum())):
                        index.add_with_ids(np.ascontiguousarray(mat[keep]), seqs[keep])
                    last = s.scalar(select(CaseVector.case_id).where(CaseVector.seq == int(seqs[keep][-1])))
                    if last is None:  # replaced meanwhile: the next compaction will write it
                        return
                    meta = self._write(index, int(seqs[keep][-1]), last)
                    del index
            with self._lock:
                self._open(meta)
                self._keep_delta_after(self.base_seq)
            logger.info("vector mirror: base compacted to %d vectors (seq %d)", meta["ntotal"], meta["seq"])
        except Exception:  # noqa: BLE001 — a failed compaction leaves the current base and delta searchable
            logger.exception("vector mirror compaction failed")

    def _threads(self, n: int) -> Any:
        """Use every core for bulk loads (start-up), one thread for single queries."""
        mirror = self

        class _Ctx:
            def __enter__(self) -> None:
                if n >= 10_000 and mirror.faiss_threads is not None:
                    faiss.omp_set_num_threads(os.cpu_count() or 1)

            def __exit__(self, *exc: object) -> None:
                if n >= 10_000 and mirror.faiss_threads is not None:
                    faiss.omp_set_num_threads(mirror.faiss_threads)

        return _Ctx()

    # --- search -----------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(case_id, cosine) of the k nearest stored vectors, most similar first (8-bit codes: cosine ± ~0.01)."""
        self.refresh()
        delta, base = self.nearest(vector, k)
        return merge_hits(delta, base, self._case_ids([seq for seq, _ in base]) if base else {}, k)

    def nearest(self, vector: np.ndarray, k: int) -> tuple[list[tuple[str, float]], list[tuple[int, float]]]:
        """Without refreshing: the delta's k nearest live rows as (case_id, cosine), most similar first, and the base's
        k + 8 nearest as (seq, cosine) — seqs the store still has to name: rows replaced or deleted since the base was
        built are no longer in case_vectors, so they drop out there (a few spare hits for them; a replaced case's new
        row is in the delta)."""
        with self._lock:
            if self.dim is None or (self.base is None and self.delta is None):
                return [], []
            v = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
            if v.shape[1] != self.dim:
                raise ValueError(f"query vector has dimension {v.shape[1]}, stored vectors {self.dim}")
            out: list[tuple[str, float]] = []
            if self.delta is not None and self.delta.ntotal:
                stale = self.delta.ntotal - len(self._seq_case)
                kk = min(self.delta.ntotal, k + stale if stale < 4 * k else 5 * k)
                scores, ids = self.delta.search(v, kk)
                for score, seq in zip(scores[0], ids[0], strict=True):
                    cid = self._seq_case.get(int(seq))
                    if cid is not None:
                        out.append((cid, float(score)))
                        if len(out) == k:
                            break
            base = self.base
        if base is None:
            return out, []
        scores, ids = base.search(v, k + 8)  # outside the lock
        return out, [(int(seq), float(score)) for score, seq in zip(scores[0], ids[0], strict=True) if seq >= 0]

    def _case_ids(self, seqs: list[int]) -> dict[int, str]:
        pg = self.store.engine.dialect.name == "postgresql"
        with _single_reads(self.store) as c:
            rows = c.execute(select(CaseVector.seq, CaseVector.case_id).where(_in(pg, CaseVector.seq, seqs, BigInteger)))
            return {int(seq): case_id for seq, case_id in rows}


class SqlCaseIndex:
    """CaseIndex over the case store (see the module docstring).

    Args:
        store: the CaseStore whose tables hold the index.
        ann_threshold: above this many vectors the mirror switches from exact search to IVF.
        nprobe: inverted lists probed per IVF query (recall vs time); None: the codec's default (DEFAULT_NPROBE).
        index_dir: where the IVF base is persisted and memory-mapped from (shared by the workers); None keeps
            it in each process's memory.
        codec: IVF codes, "PQfs" (4-bit PQ fast-scan, re-ranked on 8-bit codes; default), "SQ8" (8-bit scalar
            quantiser) or "Flat" (float32).
        band_fanout: read at most this many cases per band value (the newest by case id) — caps the cost
            of "hot" bands shared by thousands of cases (mass petitions, boilerplate); None reads all.
    """

    def __init__(self, store: CaseStore, *, ann_threshold: int = 50_000, nprobe: int | None = None,
                 faiss_threads: int | None = 1, band_fanout: int | None = None, index_dir: Path | None = None,
                 codec: str = "PQfs") -> None:
        self.store = store
        self.band_fanout = band_fanout
        self.vectors = VectorMirror(store, ann_threshold=ann_threshold, nprobe=nprobe, faiss_threads=faiss_threads,
                                    index_dir=index_dir, codec=codec)

    def add(self, snapshot: CaseSnapshot, features: LinkFeatures) -> None:
        """Register (or re-register, idempotently by case_id) one case with its link features.

        A case already in the store keeps its content; its keys, bands and vector are replaced.
        A new id becomes a case registered by the index (no decision).
        """
        with self.store.write() as s:
            case = s.get(Case, snapshot.case_id)
            if case is None:
                p = Petition(id=snapshot.case_id, text=snapshot.text, submitted_at=snapshot.submitted_at)
                case = self.store._new_case(s, p, self.store.content_hash(p), snapshot.entities, None, source="index")
                case.text = snapshot.text  # already normalised by the caller: stored verbatim
                case.status = snapshot.status
                case.district, case.subdivision = snapshot.district, snapshot.subdivision
                s.flush()
                self.store._append_events(s, [dict(case_id=snapshot.case_id, actor="linker-index", role="admin",
                                                   action="register", after={"source": "index"})])
            self.store._write_link_data(s, [(snapshot.case_id, snapshot.petitioner_keys, features)], replace=True)

    @property
    def _pg(self) -> bool:
        return self.store.engine.dialect.name == "postgresql"

    def petitioner_cases(self, keys: Sequence[str], limit: int = 50) -> list[str]:
        """Case ids sharing any of these petitioner keys, newest first."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        sub = select(CasePetitionerKey.case_id).where(_in(self._pg, CasePetitionerKey.key, keys, String))
        q = (select(Case.id).where(Case.id.in_(sub))
             .order_by(Case.submitted_at.desc().nulls_last(), Case.created_at.desc(), Case.id).limit(limit))
        with _single_reads(self.store) as c:
            return list(c.scalars(q))

    def band_candidates(self, bands: Sequence[int], limit: int = 100) -> list[tuple[str, int]]:
        """(case_id, number of shared bands), most shared first (ties by case id).

        With `band_fanout`, at most that many cases (the highest case ids) are read per band value."""
        bands = list(dict.fromkeys(int(b) for b in bands))
        if not bands:
            return []
        n = func.count().label("n")
        q: Any
        if self.band_fanout is None:
            q = (select(CaseBand.case_id, n).where(_in(self._pg, CaseBand.band, bands, BigInteger))
                 .group_by(CaseBand.case_id).order_by(n.desc(), CaseBand.case_id).limit(limit))
        elif self._pg:
            q = _PG_BANDS_CAPPED.bindparams(bands=bands, fanout=self.band_fanout, lim=limit)
        else:  # one capped index range per band: UNION ALL of LIMITed subqueries (SQL text: compiling 32 is slow)
            q = _sqlite_bands_capped(len(bands)).bindparams(
                fanout=self.band_fanout, lim=limit, **{f"b{i}": b for i, b in enumerate(bands)})
        with _single_reads(self.store) as c:
            return [(cid, int(k)) for cid, k in c.execute(q)]

    def vector_candidates(self, vector: np.ndarray, k: int = 20) -> list[tuple[str, float]]:
        """(case_id, cosine similarity), most similar first; [] when no vectors are stored."""
        return self.vectors.search(vector, k)

    def snapshots(self, case_ids: Sequence[str]) -> list[CaseSnapshot]:
        """Snapshots for these ids, in the same order (unknown ids are skipped)."""
        ids = list(dict.fromkeys(case_ids))
        found: dict[str, CaseSnapshot] = {}
        cols = (Case.id, Case.text, Case.entities, Case.submitted_at, Case.status, Case.district, Case.subdivision)
        with _single_reads(self.store) as s:
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i:i + _IN_CHUNK]
                keys: dict[str, list[str]] = {}
                if self._pg:  # one statement (one round trip): each case's keys as an array beside it
                    agg = (select(func.array_agg(CasePetitionerKey.key)).where(CasePetitionerKey.case_id == Case.id)
                           .scalar_subquery())
                    rows = list(s.execute(select(*cols, agg).where(_in(True, Case.id, chunk, String))))
                    keys = {r[0]: list(r[-1] or ()) for r in rows}
                else:
                    for cid, key in s.execute(select(CasePetitionerKey.case_id, CasePetitionerKey.key)
                                              .where(_in(False, CasePetitionerKey.case_id, chunk, String))):
                        keys.setdefault(cid, []).append(key)
                    rows = list(s.execute(select(*cols).where(_in(False, Case.id, chunk, String))))
                found.update((r[0], _snapshot(r, keys.get(r[0], ()))) for r in rows)
        return [found[c] for c in case_ids if c in found]

    @contextmanager
    def _pinned(self) -> Iterator[Any]:
        """One connection (PostgreSQL, autocommit) or read session (SQLite) for every link read inside the block."""
        if _PINNED.get() is not None:
            with _single_reads(self.store) as c:
                yield c
            return
        with _single_reads(self.store) as c:
            token = _PINNED.set((self.store, c))
            try:
                yield c
            finally:
                _PINNED.reset(token)

    def candidate_snapshots(self, keys: Sequence[str], bands: Sequence[int], vector: np.ndarray | None,
                            limits: CandidateLimits, *, timings: dict[str, float] | None = None) -> list[CaseSnapshot]:
        """The linker's candidate step (CaseIndex.candidate_snapshots), on one pinned connection. PostgreSQL: two
        statements — petitioner cases + band candidates + the vectors' max(seq), then (after the faiss search) the
        snapshots, with the base's hit seqs resolved in the same statement — instead of five check-outs and five
        statements. SQLite: the per-channel methods, in one read transaction. `timings` (ms, optional): "gather",
        "vectors", "snapshots" (PostgreSQL)."""
        t0 = time.perf_counter()
        with self._pinned() as c:
            if not self._pg:
                return gather_candidates(self, keys, bands, vector, limits)
            keys = list(dict.fromkeys(keys))
            bands = list(dict.fromkeys(int(b) for b in bands))
            params: dict[str, Any] = dict(keys=keys, plim=limits.petitioner, bands=bands, blim=limits.bands)
            if self.band_fanout is not None:
                params["fanout"] = self.band_fanout
            rows = sorted(c.execute(_pg_gather(self.band_fanout is not None, vector is not None), params),
                          key=lambda r: (r[0], r[2] or 0))  # petitioner cases by rank, band cases by rank, max(seq)
            t1 = time.perf_counter()
            ids = [cid for src, cid, _ in rows if src < 2]
            ranked: list[tuple[float, str | None, int | None]] = []
            if vector is not None:
                self.vectors.refresh(int(rows[-1][2] or 0))
                delta, base = self.vectors.nearest(vector, limits.vectors)
                ranked = sorted([(score, cid, None) for cid, score in delta] + [(score, None, seq) for seq, score in base],
                                key=lambda h: -h[0])  # (stable: as merge_hits orders them)
            t2 = time.perf_counter()
            found, vec_ids = self._pg_snapshots(c, ids, ranked, limits.vectors)
        order = dict.fromkeys(ids + vec_ids)
        if timings is not None:
            t3 = time.perf_counter()
            timings.update(gather=(t1 - t0) * 1000, vectors=(t2 - t1) * 1000, snapshots=(t3 - t2) * 1000)
        return [found[cid] for cid in order if cid in found]

    def _pg_snapshots(self, c: Any, ids: list[str], ranked: list[tuple[float, str | None, int | None]],
                      k: int) -> tuple[dict[str, CaseSnapshot], list[str]]:
        """The second statement: snapshots of `ids` and of the k best vector hits (`ranked`: (cosine, delta case id,
        base seq), best first); returns them by case id, and the vector candidates' ids."""
        top, spare = ranked[:k], ranked[k:k + 8]  # (spare: named in case some of the top k are dead rows)
        found: dict[str, CaseSnapshot] = {}
        names: dict[int, str] = {}
        params = dict(ids=list(dict.fromkeys(ids + [cid for _, cid, _ in top if cid is not None])),
                      seqs=[seq for _, _, seq in top if seq is not None], spare=[seq for _, _, seq in spare if seq is not None])
        for r in c.execute(_PG_SNAPSHOTS, params):
            if r[1] is not None:
                found[r[0]] = _snapshot(r, r[7] or ())
            if r[8] is not None:
                names[int(r[8])] = r[0]
        vec_ids = self._vector_ids(ranked[:k + 8], names, k)
        rest = [seq for _, _, seq in ranked[k + 8:] if seq is not None]
        if len(vec_ids) < k and rest:  # more than 8 dead rows among the best hits
            names.update(self.vectors._case_ids(rest))
            vec_ids = self._vector_ids(ranked, names, k)
        missing = [cid for cid in vec_ids if cid not in found]
        if missing:  # spare hits that made it into the top k
            found.update((s.case_id, s) for s in self.snapshots(missing))
        return found, vec_ids

    @staticmethod
    def _vector_ids(ranked: list[tuple[float, str | None, int | None]], names: dict[int, str], k: int) -> list[str]:
        """The k best hits' case ids (delta hits carry theirs; base hits are named by seq, or dropped)."""
        out = [cid if cid is not None else names.get(seq) for _, cid, seq in ranked]  # type: ignore[arg-type]
        return [cid for cid in out if cid is not None][:k]

    def __len__(self) -> int:
        """Number of registered cases."""
        return self.store.count_cases()
