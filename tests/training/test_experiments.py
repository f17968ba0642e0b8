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


def test_title_weighting_and_unlabelled_pool_exclude_labelled_texts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from training.experiments.topic_semi import UNLABELLED_FILES, unlabelled_pool, with_title

    assert with_title({"title": "噪音扰民", "text": "晚上施工"}, 2) == "噪音扰民。噪音扰民。晚上施工"
    assert with_title({"title": None, "text": "晚上施工"}, 2) == "晚上施工"

    def write(name: str, texts: list[str]) -> None:
        (tmp_path / name).write_text("".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n"
                                             for i, t in enumerate(texts)), encoding="utf-8")

    write("teddy2020_messages_labeled.jsonl", ["已标注的留言", "另一条已标注"])
    write(UNLABELLED_FILES[0], ["已标注的留言 ", "未标注一"])  # equal to a labelled text once normalised
    write(UNLABELLED_FILES[1], ["未标注一", "未标注二"])  # a repeat across files is kept once
    write(UNLABELLED_FILES[2], ["另一条已标注"])
    assert unlabelled_pool(tmp_path) == ["未标注一", "未标注二"]
