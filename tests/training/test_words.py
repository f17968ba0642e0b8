"""Silver text for the fast word tagger's distillation (training/words.py): which public texts, in which order."""

from __future__ import annotations

import pytest

from training.words import PUBLIC, public_texts, split_texts

pytestmark = pytest.mark.skipif(not (PUBLIC / "teddy2020_unlabeled.jsonl").exists(), reason="public data not present")


def test_public_texts_are_a_deterministic_prefix_without_held_out_texts() -> None:
    small, large = public_texts(50, "all"), public_texts(200, "all")
    assert large[:50] == small and len(large) == len(set(large)) == 200
    assert not set(large) & (set(split_texts("dev")) | set(split_texts("test")))
    assert public_texts(200, "all") == large


def test_words_1_recipe_is_the_first_unlabelled_messages() -> None:
    first = public_texts(5, "unlabeled")
    assert len(first) == 5 and "五一大道202的“李四的LIST-PUB”" in first[0]  # row 1 of teddy2020_unlabeled
    assert first == public_texts(5) != public_texts(5, "all")
