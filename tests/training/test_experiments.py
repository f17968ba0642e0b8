"""Helpers of the cross-validation experiment scripts (training/experiments/)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.experiments.topic_cv import macro, nb_ratio, nbsvm_scores


def test_nb_ratio_favours_features_of_the_class() -> None:
    # feature 0 only in class 0, feature 1 only in class 1, feature 2 everywhere
    X = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=np.float64))
    y = np.array([0, 0, 1, 1])
    r = nb_ratio(X, y, 0)
    assert r[0] > 0 > r[1]
    assert abs(r[2]) < 1e-9


def test_nbsvm_separates_a_toy_problem() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = (rng.random((60, 9)) < 0.1) * 1.0  # sparse noise in every feature
    X[np.arange(60), y * 3] += 1.0
    Xs = sp.csr_matrix(X)
    scores = nbsvm_scores(Xs, y, Xs, 1.0, 3)
    assert scores.shape == (60, 3)
    assert macro(y, scores) > 0.9  # chance is 1/3
