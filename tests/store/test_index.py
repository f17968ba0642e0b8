"""SqlCaseIndex honours the CaseIndex contract on SQLite and PostgreSQL, and stays consistent across workers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pytest

from tests.store.builders import SECRET, features, petition, result
from triage.linking.index import CaseIndex, CaseSnapshot, LinkFeatures
from triage.linking.memory import MemoryCaseIndex
from triage.schemas import Entities, Place
from triage.store import CaseStore, make_engine
from triage.store.index import SqlCaseIndex


@pytest.fixture()
def store(db_url: str) -> Iterator[CaseStore]:
    s = CaseStore(make_engine(db_url), pii_secret=SECRET, auto_upgrade=True)
    yield s
    s.engine.dispose()


def _snap(i: int, keys: tuple[str, ...] = (), day: int = 1) -> CaseSnapshot:
    return CaseSnapshot(case_id=f"X-{i}", text=f"第{i}件 小区噪声扰民", petitioner_keys=keys,
                        submitted_at=datetime(2026, 3, day, tzinfo=UTC), status="auto",
                        entities=Entities(place=Place(district="渝中区", subdivision="解放碑街道", basis="event")),
                        district="渝中区", subdivision="解放碑街道")


def test_sql_index_matches_memory_index(store: CaseStore) -> None:
    sql, mem = SqlCaseIndex(store), MemoryCaseIndex()
    assert isinstance(sql, CaseIndex)
    for i in range(12):
        snap = _snap(i, keys=("key-a",) if i % 3 == 0 else ("key-b",), day=1 + i)
        feats = features(i, bands=(i % 4, 100 + i % 2, 1_000 + i))
        sql.add(snap, feats)
        mem.add(snap, feats)
    assert len(sql) == len(mem) == 12
    assert sql.petitioner_cases(["key-a"]) == mem.petitioner_cases(["key-a"]) == ["X-9", "X-6", "X-3", "X-0"]
    assert sql.petitioner_cases(["key-a", "key-b"], limit=3) == ["X-11", "X-10", "X-9"]
    assert sql.petitioner_cases([]) == [] and sql.petitioner_cases(["nobody"]) == []
    assert sql.band_candidates([1, 101], limit=5) == [("X-1", 2), ("X-5", 2), ("X-9", 2), ("X-11", 1), ("X-3", 1)]
    assert {c for c, n in mem.band_candidates([1, 101], limit=3)} == {"X-1", "X-5", "X-9"}
    q = features(5).vector
    assert q is not None
    got, want = sql.vector_candidates(q, k=4), mem.vector_candidates(q, k=4)
    assert [c for c, _ in got] == [c for c, _ in want] and got[0][0] == "X-5"
    assert got[0][1] == pytest.approx(1.0, abs=1e-5)
    snaps = sql.snapshots(["X-2", "missing", "X-0"])
    assert [s.case_id for s in snaps] == ["X-2", "X-0"]
    assert snaps[0] == _snap(2, keys=("key-b",), day=3)


def test_sql_index_re_add_replaces_features(store: CaseStore) -> None:
    sql = SqlCaseIndex(store)
    sql.add(_snap(1, keys=("k1",)), features(1, bands=(1, 2)))
    sql.add(_snap(2), features(2, bands=(2, 3)))
    moved = features(2).vector
    sql.add(_snap(1, keys=("k2",)), LinkFeatures(bands=(3,), vector=moved))
    assert len(sql) == 2
    assert sql.petitioner_cases(["k1"]) == [] and sql.petitioner_cases(["k2"]) == ["X-1"]
    assert sql.band_candidates([1, 2, 3]) == [("X-2", 2), ("X-1", 1)]
    assert moved is not None
    top = sql.vector_candidates(moved, k=5)
    assert {c for c, s in top if s > 0.999} == {"X-1", "X-2"} and len(top) == 2  # the replaced vector is gone


def test_vector_mirror_sees_writes_of_other_workers(store: CaseStore, db_url: str) -> None:
    reader = SqlCaseIndex(store)
    assert reader.vector_candidates(np.ones(16, dtype=np.float32) / 4, k=3) == []
    other = CaseStore(make_engine(db_url), pii_secret=SECRET)  # another API worker
    for i in range(3):
        p = petition(case_id=f"W-{i}", text=f"工地夜间施工噪声 {i}")
        other.save_triage(p, result(p), actor="a", role="clerk", features=features(10 + i))
    v = features(11).vector
    assert v is not None
    assert reader.vector_candidates(v, k=1)[0][0] == "W-1"
    assert reader.vectors.last_seq > 0 and len(reader.vectors) == 3
    assert reader.vectors.refresh() == 0  # nothing new: one cheap max(seq) query
    other.engine.dispose()


@pytest.mark.parametrize("codec", ["PQfs", "SQ8"])
def test_vector_mirror_switches_to_ivf(store: CaseStore, codec: str) -> None:
    sql = SqlCaseIndex(store, ann_threshold=200, nprobe=64, codec=codec)  # nprobe ≥ nlist (64): IVF searches every list
    for i in range(150):
        sql.add(_snap(i), features(i, bands=()))
    v17 = features(17).vector
    assert v17 is not None
    assert sql.vector_candidates(v17, k=3)[0][0] == "X-17" and sql.vectors.kind == "flat"
    for i in range(150, 260):
        sql.add(_snap(i), features(i, bands=()))
    v = features(217).vector
    assert v is not None
    top = sql.vector_candidates(v, k=3)
    assert sql.vectors.kind == "ivf" and len(sql.vectors) == 260
    assert top[0][0] == "X-217" and len(top) == 3
    assert sql.vector_candidates(v17, k=1)[0][0] == "X-17"  # vectors loaded before the switch are still found
    with pytest.raises(ValueError, match="dimension"):
        sql.vector_candidates(np.ones(8, dtype=np.float32), k=1)


@pytest.mark.parametrize("codec", ["PQfs", "SQ8"])
def test_persisted_base_is_shared_by_workers(store: CaseStore, tmp_path: Path, codec: str) -> None:
    def worker() -> SqlCaseIndex:
        return SqlCaseIndex(store, ann_threshold=200, nprobe=64, index_dir=tmp_path, codec=codec)

    a = worker()
    for i in range(150):
        a.add(_snap(i), features(i, bands=()))
    v17 = features(17).vector
    assert v17 is not None
    assert a.vector_candidates(v17, k=1)[0][0] == "X-17" and a.vectors.kind == "flat"
    assert not list(tmp_path.glob("*.faiss"))  # below the threshold: exact search, nothing written
    for i in range(150, 260):
        a.add(_snap(i), features(i, bands=()))
    assert a.vector_candidates(v17, k=1)[0][0] == "X-17"
    assert a.vectors.kind == "ivf" and a.vectors.persisted is not None and len(a.vectors) == 260
    built = a.vectors.persisted
    assert [p.name for p in tmp_path.glob("*.faiss")] == [built.name]

    b = worker()  # another worker: opens the same file (memory-mapped) instead of building one
    assert b.vectors.refresh() == 260 and b.vectors.persisted == built and b.vectors.delta is None
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(b.vectors.base).invlists)
    assert getattr(lists, "prefetch_nthread", 0) == 0  # no prefetch threads per search (SQ8: OnDiskInvertedLists)
    v = features(217).vector
    assert v is not None
    assert [c for c, _ in b.vector_candidates(v, k=3)] == [c for c, _ in a.vector_candidates(v, k=3)]
    assert b.vector_candidates(v, k=3)[0] == ("X-217", pytest.approx(1.0, abs=0.02))  # 8-bit codes: approximate cosine

    for i in range(260, 265):  # newer rows: the exact delta on top of the base, in both workers
        a.add(_snap(i), features(i, bands=()))
    v262 = features(262).vector
    assert v262 is not None
    assert a.vector_candidates(v262, k=1)[0][0] == b.vector_candidates(v262, k=1)[0][0] == "X-262"
    assert b.vectors.delta is not None and b.vectors.delta.ntotal == 5

    a.add(_snap(17), LinkFeatures(bands=(), vector=v262))  # a case of the base moves: its old row must not be found
    assert "X-17" not in {c for c, _ in b.vector_candidates(v17, k=5)}
    assert {c for c, s in b.vector_candidates(v262, k=2) if s > 0.999} == {"X-17", "X-262"}

    b.vectors.compact_after = 3  # fold the delta into a new file (background thread)
    b.vectors.refresh()
    a.add(_snap(265), features(265, bands=()))
    b.vector_candidates(v262, k=1)
    assert b.vectors._compactor is not None
    b.vectors._compactor.join(timeout=60)
    assert b.vectors.persisted is not None and b.vectors.persisted != built and not built.exists()
    assert b.vectors.base.ntotal == 267 and b.vectors.delta is None  # 260 + 7 newer rows (X-17's old one stays, dead)
    assert b.vector_candidates(v262, k=2)[0][1] > 0.99 and "X-17" not in {c for c, _ in b.vector_candidates(v17, k=5)}
    c = worker()  # a new worker opens the compacted file
    assert c.vectors.refresh() == 267 and c.vectors.persisted == b.vectors.persisted
    v265 = features(265).vector
    assert v265 is not None and c.vector_candidates(v265, k=1)[0][0] == "X-265"


def test_default_base_is_fast_scan_with_its_own_nprobe(store: CaseStore) -> None:
    from triage.store.index import DEFAULT_NPROBE

    sql = SqlCaseIndex(store, ann_threshold=200)
    assert sql.vectors.codec == "PQfs" and sql.vectors.nprobe == DEFAULT_NPROBE["PQfs"] == 512
    assert SqlCaseIndex(store, codec="SQ8").vectors.nprobe == 32 and SqlCaseIndex(store, nprobe=7).vectors.nprobe == 7
    for i in range(260):
        sql.add(_snap(i), features(i, bands=()))
    v = features(99).vector
    assert v is not None
    assert sql.vector_candidates(v, k=2)[0][0] == "X-99" and sql.vectors.kind == "ivf"
    ivf = faiss.extract_index_ivf(sql.vectors.base)
    assert ivf.nprobe == 512 and faiss.downcast_index(sql.vectors.base.index).k_factor == sql.vectors.refine_factor
    with pytest.raises(ValueError, match="codec"):
        SqlCaseIndex(store, codec="PQ64")


def _close(seed: int, v: np.ndarray, noise: float) -> LinkFeatures:
    """A vector near `v`, with a few bands shared with its neighbours."""
    w = v + noise * np.random.default_rng(seed).normal(size=v.shape).astype(np.float32)
    return LinkFeatures(bands=(seed % 7, 50 + seed % 3), vector=(w / np.linalg.norm(w)).astype(np.float32))


@pytest.mark.parametrize("fanout", [None, 2])
def test_candidate_snapshots_equal_the_per_channel_reads(store: CaseStore, fanout: int | None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-call candidate step (two statements on PostgreSQL) returns what the per-channel methods give, in
    the same order — over an IVF base, an exact delta, base rows replaced since the base was built (more than the
    8 spare hits: the second resolution step runs), empty keys and no vector."""
    from triage.linking.index import CandidateLimits, gather_candidates

    sql = SqlCaseIndex(store, ann_threshold=200, nprobe=64, band_fanout=fanout)
    hub = features(1000).vector
    assert hub is not None
    for i in range(240):  # the base: 12 cases very close to `hub`, 8 fairly close, the rest anywhere
        f = _close(i, hub, 0.03 if i < 12 else 0.3) if i < 20 else features(i, bands=(i % 7, 50 + i % 3))
        sql.add(_snap(i, keys=(f"k{i % 5}",), day=1 + i % 28), f)
    assert sql.vector_candidates(hub, k=1) and sql.vectors.kind == "ivf"
    for i in range(12):  # the 12 very close ones move away: their base rows are dead, their new rows in the delta
        sql.add(_snap(i, keys=(f"k{i % 5}",)), features(5000 + i, bands=(i % 7,)))
    for i in range(240, 250):  # newer cases (the delta), two of them closest to `hub`
        sql.add(_snap(i, keys=("k1",), day=2), _close(i, hub, 0.01) if i < 242 else features(i, bands=(i % 7,)))
    lim = CandidateLimits(petitioner=4, bands=6, vectors=5)
    queries = [(["k1", "k3"], [1, 51, 999], hub), ([], [2, 52], features(7).vector), (["k2"], [3], None),
               (["nobody"], [], features(245).vector), (["k0"], [0, 50], features(5003).vector)]
    for keys, bands, vec in queries:
        got = sql.candidate_snapshots(keys, bands, vec, lim)
        want = gather_candidates(sql, keys, bands, vec, lim)
        assert [s.case_id for s in got] == [s.case_id for s in want] and got == want
    resolved: list[list[int]] = []
    case_ids = sql.vectors._case_ids
    monkeypatch.setattr(sql.vectors, "_case_ids", lambda seqs: resolved.append(seqs) or case_ids(seqs))
    hits = [s.case_id for s in sql.candidate_snapshots([], [], hub, lim)]
    assert set(hits[:2]) == {"X-240", "X-241"} and len(hits) == 5  # the delta's two, then no dead base row ...
    assert hits[2] in {f"X-{i}" for i in range(12, 20)}  # ... but a live one ranked after the 12 dead
    if store.engine.dialect.name == "postgresql":
        assert len(resolved) == 1 and resolved[0]  # the hits beyond the first k + 8: one more statement


@pytest.mark.postgres
def test_candidate_snapshots_use_one_connection_and_two_statements(pg_url: str) -> None:
    import sqlalchemy as sa

    from triage.linking.index import CandidateLimits

    store = CaseStore(make_engine(pg_url), pii_secret=SECRET, auto_upgrade=True)
    try:
        sql = SqlCaseIndex(store)
        for i in range(30):
            sql.add(_snap(i, keys=("k",)), features(i, bands=(i % 3,)))
        v = features(4).vector
        sql.candidate_snapshots(["k"], [1], v, CandidateLimits())  # (the mirror loads its rows once)
        seen: list[str] = []
        sa.event.listen(store.engine, "checkout", lambda *a: seen.append("checkout"))
        sa.event.listen(store.engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt.split()[0]))
        got = sql.candidate_snapshots(["k"], [1], v, CandidateLimits())
        assert got[0].case_id == "X-29" and "X-4" in {s.case_id for s in got} and len(got) == 30
        assert seen.count("checkout") == 1 and len(seen) == 3, seen  # (pool_pre_ping's own SELECT 1 is not an event)
    finally:
        store.engine.dispose()
