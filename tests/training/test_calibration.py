"""Calibration fit (temperature + class biases) and its per-domain row weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from training.baseline import fit_calibration
from training.config import CalibrationConfig


def _scores(n: int, prior: list[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that carry no information beyond noise, labels drawn with `prior`: the fitted biases learn the prior."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(prior), size=n, p=prior)
    return rng.normal(size=(n, len(prior))), y


def test_domain_weights_give_every_domain_the_same_total() -> None:
    cfg = CalibrationConfig(domains=["data/datasets/real/*"])
    paths = ["data/corpus/written/train.jsonl"] * 30 + ["data/datasets/real/train.jsonl"] * 60 + [
        "data/datasets/real/active.jsonl"] * 10
    w = np.array(cfg.domain_weights(paths))
    assert w.mean() == pytest.approx(1.0)
    assert w[:30].sum() == pytest.approx(w[30:].sum())  # written rows vs every real file together
    assert len(set(np.round(w[30:], 12))) == 1  # one weight within a domain
    assert CalibrationConfig().domain_weights(paths) is None


def test_unmatched_rows_are_their_own_domain_and_patterns_are_separate_domains() -> None:
    cfg = CalibrationConfig(domains=["a/*", "b/*"])
    w = np.array(cfg.domain_weights(["a/x"] * 2 + ["b/y"] * 8 + ["c/z"] * 5))
    assert w[:2].sum() == pytest.approx(w[2:10].sum()) == pytest.approx(w[10:].sum())


def test_zero_weight_rows_do_not_move_the_fit() -> None:
    cfg = CalibrationConfig()
    s1, y1 = _scores(400, [0.7, 0.2, 0.1], seed=1)
    s2, y2 = _scores(400, [0.1, 0.2, 0.7], seed=2)
    alone = fit_calibration(s1, y1, cfg)
    padded = fit_calibration(np.vstack([s1, s2]), np.concatenate([y1, y2]), cfg,
                             np.concatenate([np.ones(400), np.zeros(400)]))
    assert padded[0] == pytest.approx(alone[0], rel=1e-3)
    np.testing.assert_allclose(padded[1], alone[1], atol=1e-3)


def test_balanced_domains_imply_the_average_prior() -> None:
    """Domain A (many rows) favours class 0, domain B (few rows) class 2: unweighted, the calibrated prior follows A;
    with each domain's rows weighted to the same total it lies halfway between the two priors."""
    cfg = CalibrationConfig(bias_l2=0.0)
    sa, ya = _scores(3000, [0.8, 0.1, 0.1], seed=3)
    sb, yb = _scores(600, [0.1, 0.1, 0.8], seed=4)
    scores, y = np.vstack([sa, sb]), np.concatenate([ya, yb])
    domains = ["a"] * 3000 + ["b"] * 600
    weights = CalibrationConfig(domains=["a"]).domain_weights(domains)

    def prior(t: float, b: np.ndarray) -> np.ndarray:
        return softmax(scores / t + b, axis=1).mean(axis=0)

    plain = prior(*fit_calibration(scores, y, cfg))
    balanced = prior(*fit_calibration(scores, y, cfg, np.array(weights)))
    assert plain[0] > 0.6 and plain[2] < 0.3
    assert balanced[0] == pytest.approx(balanced[2], abs=0.08)
    assert balanced[2] > plain[2] + 0.15


def test_bad_row_weights_are_refused() -> None:
    s, y = _scores(10, [0.5, 0.5], seed=5)
    with pytest.raises(ValueError, match="calibration row weights"):
        fit_calibration(s, y, CalibrationConfig(), np.ones(9))
    with pytest.raises(ValueError, match="calibration row weights"):
        fit_calibration(s, y, CalibrationConfig(), -np.ones(10))
