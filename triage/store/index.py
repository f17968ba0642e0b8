"""SqlCaseIndex: the linker's CaseIndex (triage/linking/index.py) over the case store.

* petitioner keys and MinHash band hashes are tables (`case_petitioner_keys`, `case_bands`)
  queried with an index: every API worker sees the same data, and it scales with the database;
* vectors live in `case_vectors`, mirrored in memory by a faiss inner-product index (exact
  `IndexFlatIP` up to `ann_threshold` vectors, IVF above). Before each vector query the mirror
  checks `max(seq)` (one index lookup) and pulls only rows with a larger seq, so several worker
  processes stay consistent with the store without talking to each other. Writers make seqs
  visible in commit order (see CaseStore._lock_vectors), so no row is skipped.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np
from sqlalchemy import BigInteger, ColumnElement, String, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from triage.linking.index import CaseSnapshot, LinkFeatures
from triage.schemas import Entities, Petition
from triage.store.models import Case, CaseBand, CasePetitionerKey, CaseVector
from triage.store.repository import CaseStore

logger = logging.getLogger(__name__)

# IN lists are sent in chunks (SQLite's default limit on bound parameters is 32766; keep plans simple).
_IN_CHUNK = 900


@contextmanager
def _single_reads(store: CaseStore) -> Iterator[Any]:
    """Where the link queries run. On PostgreSQL an autocommit connection: each statement is consistent by
    itself, and the BEGIN/ROLLBACK round trips of a read transaction are gone (they were most of the cost
    of a link query on busy cores). Elsewhere the store's read transaction."""
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


class VectorMirror:
    """An in-memory faiss copy of `case_vectors`, refreshed incrementally by seq.

    Exact search (`IndexFlatIP`) up to `ann_threshold` vectors; above it an inverted-file index
    (`IndexIVFFlat`, inner product, nlist ≈ 2·√n, probing `nprobe` lists), trained once on the
    vectors present when the threshold is crossed. IVF rather than HNSW: loading 100k vectors into
    HNSW took minutes on two busy cores, IVF adds are one small matrix product per batch.
    """

    def __init__(self, store: CaseStore, *, ann_threshold: int = 50_000, nprobe: int = 32,
                 faiss_threads: int | None = 1) -> None:
        if faiss_threads is not None:
            # Process-wide: one query at a time gains nothing from OpenMP, and on busy cores its spinning
            # threads cost tens of milliseconds at p99 (measured: p99 37 ms vs 0.6 ms on 5k vectors, 2 cores).
            faiss.omp_set_num_threads(faiss_threads)
        self.faiss_threads = faiss_threads
        self.store = store
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self.dim: int | None = None
        self.index: Any = None
        self.kind = "empty"  # empty | flat | ivf
        self._quantizer: Any = None
        self.last_seq = 0
        self._seq_case: dict[int, str] = {}
        self._case_seq: dict[str, int] = {}
        self._skipped_dim = 0

    def __len__(self) -> int:
        return len(self._case_seq)

    def refresh(self) -> int:
        """Pull vectors added since the last refresh; returns how many were added."""
        with self._lock:
            if self.store.engine.dialect.name == "postgresql":
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
                seqs: list[int] = []
                # Rows go straight into one preallocated matrix (at most top - last_seq rows): at 1M × 512 a list of
                # bytes plus their join held two extra copies (~4 GB) at start-up.
                mat: np.ndarray | None = None
                q = (select(CaseVector.seq, CaseVector.case_id, CaseVector.dim, CaseVector.vector)
                     .where(CaseVector.seq > self.last_seq, CaseVector.seq <= top).order_by(CaseVector.seq))
                for seq, case_id, dim, blob in s.execute(q.execution_options(yield_per=20_000)):
                    if self.dim is None:
                        self.dim = int(dim)
                    if dim != self.dim:
                        self._skipped_dim += 1
                        continue
                    if mat is None:
                        mat = np.empty((top - self.last_seq, self.dim), dtype=np.float32)
                    old = self._case_seq.get(case_id)
                    if old is not None:
                        self._seq_case.pop(old, None)  # the stale entry stays in faiss; filtered out at query time
                    self._case_seq[case_id] = seq
                    self._seq_case[seq] = case_id
                    mat[len(seqs)] = np.frombuffer(blob, dtype=np.float32)
                    seqs.append(seq)
            added = self._add(seqs, mat[:len(seqs)] if mat is not None else None)
            self.last_seq = top
            if self._skipped_dim:
                logger.warning("%d stored vectors have a dimension other than %s and are not searchable "
                               "(re-run ingest with the current linker encoder)", self._skipped_dim, self.dim)
            return added

    def _add(self, seqs: list[int], mat: np.ndarray | None) -> int:
        if not seqs or mat is None:
            return 0
        assert self.dim is not None
        ids = np.asarray(seqs, dtype=np.int64)
        with self._threads(len(seqs)):
            n = (self.index.ntotal if self.index is not None else 0) + len(seqs)
            if self.kind != "ivf" and n > self.ann_threshold:
                if self.index is not None and self.index.ntotal:
                    old_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
                    mat = np.vstack([self.index.index.reconstruct_n(0, self.index.ntotal), mat])
                    ids = np.concatenate([old_ids, ids])
                self._build_ivf(mat)
            elif self.index is None:
                self.index, self.kind = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim)), "flat"
            self.index.add_with_ids(np.ascontiguousarray(mat), ids)
        return len(seqs)

    def _build_ivf(self, sample_from: np.ndarray) -> None:
        assert self.dim is not None
        n = sample_from.shape[0]
        # nlist ≈ 2·√n and k-means on 40 points per list, 10 iterations: at 1M × 512 the former 4·√n lists
        # trained on 64 points each (25 iterations) cost ~2.6e13 flops, tens of minutes on two busy cores.
        nlist = int(min(4096, max(64, 2 * np.sqrt(n))))
        rng = np.random.default_rng(0)
        sample = sample_from[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
        self._quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(self._quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        index.cp.max_points_per_centroid = 40
        index.train(np.ascontiguousarray(sample))
        index.nprobe = self.nprobe
        self.index, self.kind = index, "ivf"
        logger.info("vector mirror uses IVF: %d vectors, nlist=%d, nprobe=%d", n, nlist, self.nprobe)

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

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(case_id, cosine) of the k nearest stored vectors, most similar first."""
        self.refresh()
        with self._lock:
            if self.index is None or self.index.ntotal == 0:
                return []
            v = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
            if v.shape[1] != self.dim:
                raise ValueError(f"query vector has dimension {v.shape[1]}, stored vectors {self.dim}")
            stale = self.index.ntotal - len(self._seq_case)
            kk = min(self.index.ntotal, k + stale if stale < 4 * k else 5 * k)
            scores, ids = self.index.search(v, kk)
            out: list[tuple[str, float]] = []
            for score, seq in zip(scores[0], ids[0], strict=True):
                cid = self._seq_case.get(int(seq))
                if cid is not None:
                    out.append((cid, float(score)))
                    if len(out) == k:
                        break
            return out


class SqlCaseIndex:
    """CaseIndex over the case store (see the module docstring).

    Args:
        store: the CaseStore whose tables hold the index.
        ann_threshold: above this many vectors the in-memory mirror switches from exact search to IVF.
        nprobe: inverted lists probed per IVF query (recall vs time).
        band_fanout: read at most this many cases per band value (the newest by case id) — caps the cost
            of "hot" bands shared by thousands of cases (mass petitions, boilerplate); None reads all.
    """

    def __init__(self, store: CaseStore, *, ann_threshold: int = 50_000, nprobe: int = 32,
                 faiss_threads: int | None = 1, band_fanout: int | None = None) -> None:
        self.store = store
        self.band_fanout = band_fanout
        self.vectors = VectorMirror(store, ann_threshold=ann_threshold, nprobe=nprobe, faiss_threads=faiss_threads)

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
        with _single_reads(self.store) as s:
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i:i + _IN_CHUNK]
                keys: dict[str, list[str]] = {}
                for cid, key in s.execute(select(CasePetitionerKey.case_id, CasePetitionerKey.key)
                                          .where(_in(self._pg, CasePetitionerKey.case_id, chunk, String))):
                    keys.setdefault(cid, []).append(key)
                cols = (Case.id, Case.text, Case.entities, Case.submitted_at, Case.status, Case.district, Case.subdivision)
                for cid, text_, ents, at, status, district, sub in s.execute(
                        select(*cols).where(_in(self._pg, Case.id, chunk, String))):
                    found[cid] = CaseSnapshot(
                        case_id=cid, text=text_, entities=Entities.model_validate(ents) if ents else Entities(),
                        petitioner_keys=tuple(sorted(keys.get(cid, ()))), submitted_at=at, status=status,
                        district=district, subdivision=sub,
                    )
        return [found[c] for c in case_ids if c in found]

    def __len__(self) -> int:
        """Number of registered cases."""
        return self.store.count_cases()
