"""The contract between the linker (triage/linking) and whatever stores earlier cases.

The linker computes everything derived from text (MinHash band hashes, a semantic vector, the
petitioner keys) and asks a CaseIndex for candidates. Two implementations exist:

* ``MemoryCaseIndex`` (triage/linking/memory.py) for unit tests and quick experiments;
* ``SqlCaseIndex`` (triage/store/index.py) over the case store, the product one: band hashes
  live in a database table (every API worker sees the same index and it scales with the
  database) and vectors in a table mirrored by an approximate nearest-neighbour index that is
  refreshed from the table, so it stays consistent with the store.

Band hashes are signed 64-bit integers (they fit a BIGINT column). Vectors are float32,
L2-normalised, of the dimension the linker's encoder declares; cosine = dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from triage.schemas import Entities


@dataclass(frozen=True)
class CaseSnapshot:
    """What the verifier needs to know about an earlier case (nothing else leaves the store)."""

    case_id: str
    text: str  # normalised text
    entities: Entities = field(default_factory=Entities)
    petitioner_keys: tuple[str, ...] = ()  # keyed hashes (triage.pii.petitioner_key), never raw identifiers
    submitted_at: datetime | None = None
    status: str | None = None  # the earlier case's current status (taxonomy status code)
    district: str | None = None
    subdivision: str | None = None


@dataclass(frozen=True)
class LinkFeatures:
    """Everything the index stores for one case besides the snapshot."""

    bands: tuple[int, ...]  # MinHash LSH band hashes, signed 64-bit
    vector: np.ndarray | None  # float32, L2-normalised; None when no encoder is configured


@dataclass(frozen=True)
class CandidateLimits:
    """How many candidates each channel gives the linker (and how many links it returns)."""

    petitioner: int = 50
    bands: int = 50
    vectors: int = 30
    max_links: int = 5


@runtime_checkable
class CaseIndex(Protocol):
    def add(self, snapshot: CaseSnapshot, features: LinkFeatures) -> None:
        """Register (or re-register, idempotently by case_id) one case."""

    def petitioner_cases(self, keys: Sequence[str], limit: int = 50) -> list[str]:
        """Case ids sharing any of these petitioner keys, newest first."""

    def band_candidates(self, bands: Sequence[int], limit: int = 100) -> list[tuple[str, int]]:
        """(case_id, number of shared bands), most shared first."""

    def vector_candidates(self, vector: np.ndarray, k: int = 20) -> list[tuple[str, float]]:
        """(case_id, cosine similarity), most similar first; [] when no vectors are stored."""

    def snapshots(self, case_ids: Sequence[str]) -> list[CaseSnapshot]:
        """Snapshots for these ids, in the same order (unknown ids are skipped)."""

    def candidate_snapshots(self, keys: Sequence[str], bands: Sequence[int], vector: np.ndarray | None,
                            limits: CandidateLimits) -> list[CaseSnapshot]:
        """The linker's whole candidate step: snapshots of the petitioner cases, then the band candidates, then the
        vector candidates (deduplicated, in that order) — what `gather_candidates` computes from the methods above.
        An index may answer it in fewer round trips (SqlCaseIndex)."""

    def __len__(self) -> int:
        """Number of registered cases."""


def gather_candidates(index: CaseIndex, keys: Sequence[str], bands: Sequence[int], vector: np.ndarray | None,
                      limits: CandidateLimits) -> list[CaseSnapshot]:
    """`CaseIndex.candidate_snapshots` from the per-channel methods (the reference every index must agree with)."""
    ids: dict[str, None] = dict.fromkeys(index.petitioner_cases(keys, limit=limits.petitioner) if keys else [])
    ids.update(dict.fromkeys(cid for cid, _ in index.band_candidates(bands, limit=limits.bands)))
    if vector is not None:
        ids.update(dict.fromkeys(cid for cid, _ in index.vector_candidates(vector, k=limits.vectors)))
    return index.snapshots(list(ids))
