"""MemoryCaseIndex: an in-process CaseIndex for unit tests, evaluation runs and quick experiments.

Band hashes in a dict (band → case ids), vectors in one float32 matrix searched exactly (a dot
product per query: exact nearest neighbours; fine to ~10^5 cases). The product index over the
case store is triage/store/index.py (SqlCaseIndex); both implement triage.linking.index.CaseIndex.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from triage.linking.index import CandidateLimits, CaseSnapshot, LinkFeatures, gather_candidates

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MemoryCaseIndex:
    """Exact in-memory index (re-adding a case id replaces it)."""

    def __init__(self) -> None:
        self._snap: dict[str, CaseSnapshot] = {}
        self._bands: dict[str, tuple[int, ...]] = {}
        self._by_band: dict[int, set[str]] = defaultdict(set)
        self._by_key: dict[str, set[str]] = defaultdict(set)
        self._vec_ids: list[str] = []
        self._vec_pos: dict[str, int] = {}
        self._vecs: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None

    def add(self, snapshot: CaseSnapshot, features: LinkFeatures) -> None:
        cid = snapshot.case_id
        if cid in self._snap:
            self._remove(cid)
        self._snap[cid] = snapshot
        self._bands[cid] = tuple(features.bands)
        for b in features.bands:
            self._by_band[b].add(cid)
        for k in snapshot.petitioner_keys:
            self._by_key[k].add(cid)
        if features.vector is not None:
            v = np.asarray(features.vector, dtype=np.float32).reshape(-1)
            if cid in self._vec_pos:
                self._vecs[self._vec_pos[cid]] = v
            else:
                self._vec_pos[cid] = len(self._vec_ids)
                self._vec_ids.append(cid)
                self._vecs.append(v)
            self._matrix = None

    def _remove(self, cid: str) -> None:
        for b in self._bands.pop(cid, ()):
            self._by_band[b].discard(cid)
        for k in self._snap[cid].petitioner_keys:
            self._by_key[k].discard(cid)

    def petitioner_cases(self, keys: Sequence[str], limit: int = 50) -> list[str]:
        ids = {cid for k in keys for cid in self._by_key.get(k, ())}
        ordered = sorted(ids, key=lambda c: (self._snap[c].submitted_at or _EPOCH, c), reverse=True)
        return ordered[:limit]

    def band_candidates(self, bands: Sequence[int], limit: int = 100) -> list[tuple[str, int]]:
        counts: Counter[str] = Counter()
        for b in bands:
            counts.update(self._by_band.get(b, ()))
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def vector_candidates(self, vector: np.ndarray, k: int = 20) -> list[tuple[str, float]]:
        if not self._vec_ids:
            return []
        if self._matrix is None:
            self._matrix = np.vstack(self._vecs).astype(np.float32)
        sims = self._matrix @ np.asarray(vector, dtype=np.float32).reshape(-1)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(self._vec_ids[i], float(sims[i])) for i in top]

    def snapshots(self, case_ids: Sequence[str]) -> list[CaseSnapshot]:
        return [self._snap[c] for c in case_ids if c in self._snap]

    def candidate_snapshots(self, keys: Sequence[str], bands: Sequence[int], vector: np.ndarray | None,
                            limits: CandidateLimits) -> list[CaseSnapshot]:
        return gather_candidates(self, keys, bands, vector, limits)

    def __len__(self) -> int:
        return len(self._snap)
