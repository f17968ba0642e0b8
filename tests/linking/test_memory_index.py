"""MemoryCaseIndex implements the CaseIndex contract (triage/linking/index.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from triage.linking.index import CandidateLimits, CaseIndex, CaseSnapshot, LinkFeatures
from triage.linking.memory import MemoryCaseIndex

T0 = datetime(2026, 3, 1, 10, tzinfo=timezone(timedelta(hours=8)))


def _vec(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def _snap(cid: str, days: int, keys: tuple[str, ...] = ()) -> CaseSnapshot:
    return CaseSnapshot(case_id=cid, text=f"案件{cid}", petitioner_keys=keys, submitted_at=T0 + timedelta(days=days))


def test_memory_index_is_a_case_index() -> None:
    assert isinstance(MemoryCaseIndex(), CaseIndex)


def test_memory_index_candidates_by_key_band_and_vector() -> None:
    idx = MemoryCaseIndex()
    idx.add(_snap("A", 0, ("k1",)), LinkFeatures(bands=(1, 2, 3), vector=_vec(1, 0, 0)))
    idx.add(_snap("B", 5, ("k1", "k2")), LinkFeatures(bands=(2, 3, 4), vector=_vec(0.9, 0.1, 0)))
    idx.add(_snap("C", 9), LinkFeatures(bands=(9,), vector=_vec(0, 0, 1)))
    assert len(idx) == 3
    assert idx.petitioner_cases(["k1"]) == ["B", "A"]  # newest first
    assert idx.petitioner_cases(["nobody"]) == []
    assert idx.band_candidates([2, 3, 4]) == [("B", 3), ("A", 2)]
    top = idx.vector_candidates(_vec(1, 0, 0), k=2)
    assert [c for c, _ in top] == ["A", "B"] and top[0][1] > top[1][1]
    assert [s.case_id for s in idx.snapshots(["C", "missing", "A"])] == ["C", "A"]
    # the one-call candidate step: petitioner cases, then bands, then vectors, deduplicated, within each limit
    lim = CandidateLimits(petitioner=1, bands=5, vectors=1)
    assert [s.case_id for s in idx.candidate_snapshots(["k1"], [9], _vec(0, 0.1, 1), lim)] == ["B", "C"]
    assert [s.case_id for s in idx.candidate_snapshots([], [4], None, lim)] == ["B"]


def test_memory_index_re_add_replaces_bands_keys_and_vector() -> None:
    idx = MemoryCaseIndex()
    idx.add(_snap("A", 0, ("k1",)), LinkFeatures(bands=(1,), vector=_vec(1, 0)))
    idx.add(_snap("A", 0, ("k2",)), LinkFeatures(bands=(7,), vector=_vec(0, 1)))
    assert len(idx) == 1
    assert idx.band_candidates([1]) == [] and idx.band_candidates([7]) == [("A", 1)]
    assert idx.petitioner_cases(["k1"]) == [] and idx.petitioner_cases(["k2"]) == ["A"]
    assert idx.vector_candidates(_vec(0, 1), k=5)[0][1] > 0.99


def test_memory_index_without_vectors_returns_no_vector_candidates() -> None:
    idx = MemoryCaseIndex()
    idx.add(_snap("A", 0), LinkFeatures(bands=(1,), vector=None))
    assert idx.vector_candidates(_vec(1, 0), k=3) == []
