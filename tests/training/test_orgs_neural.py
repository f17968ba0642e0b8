"""The organisation tagger's sequence layer: numpy serving matches the torch model it was trained as."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.factories import state_marked_example

torch = pytest.importorskip("torch")

from training.orgs import Example  # noqa: E402
from training.orgs_neural import SequenceModel, Vocab, chunk_items, collate, fit_model, to_layer  # noqa: E402
from triage.orgs import CHANNELS, Lexicon, OrgTagger, StateLayer, candidate_chunks  # noqa: E402


def _example(text: str, gold: list[tuple[int, int]], rng: np.random.Generator, group: str) -> Example:
    words = [(i, min(i + 2, len(text)), "ORG" if i % 4 == 0 else "n") for i in range(0, len(text), 2)]
    marks = {ch: [] for ch in CHANNELS}
    marks["head"] = [(e - 1, e) for _, e in gold]
    states = rng.normal(size=(len(text), 256)).astype(np.float32)
    return Example(group, group, text, words, marks, gold, OrgTagger.chunks(text), states)


TEXTS = [
    ("我在巴渝老灶火锅当服务员，老板拖欠工资。", [(2, 8)]),
    ("区人社局说要等劳动监察大队调查，我去了三次。", [(0, 4), (7, 13)]),
    ("顺达物流有限公司的车天天堵在门口，找了街道办事处没人管。", [(0, 8), (19, 24)]),
    ("希望有关部门管一哈。", []),
]


@pytest.fixture(scope="module", params=["lstm", "cnn"])
def trained(request: pytest.FixtureRequest) -> tuple[SequenceModel, Vocab, list[Example]]:
    rng = np.random.default_rng(0)
    examples = [_example(t, g, rng, f"g{i}-{k}") for k in range(3) for i, (t, g) in enumerate(TEXTS)]
    model, vocab = fit_model(examples, epochs=2, seed=0, hidden=8, proj=16, arch=request.param)
    return model, vocab, examples


def test_numpy_emissions_match_the_torch_model_on_every_chunk(trained: tuple[SequenceModel, Vocab, list[Example]]) -> None:
    model, vocab, examples = trained
    layer = to_layer(model, vocab, 1.5)
    lexicon = Lexicon({"顺达物流有限公司": 4, "区人社局": 3})
    for x in examples:
        served = layer.emissions(x.text, x.words, x.marks, lexicon.matches(x.text), x.states, x.chunks)
        items = chunk_items(x, vocab, lexicon)
        with torch.no_grad():
            ids, lab, dense, states, _, mask, lengths = collate(items)
            em = model.emissions(ids, lab, dense, states, lengths).numpy()
        expected = np.zeros_like(served)
        for (a, b), row in zip(x.chunks, em, strict=True):
            expected[a:b] = row[: b - a]
        np.testing.assert_allclose(served, expected, atol=1e-4)
        assert np.abs(served).max() > 0.01  # a trained layer, not zeros


def test_a_tagger_with_a_sequence_layer_saves_and_loads_it(tmp_path: Path,
                                                          trained: tuple[SequenceModel, Vocab, list[Example]]) -> None:
    model, vocab, examples = trained
    layer = to_layer(model, vocab, 1.5)
    state = StateLayer(np.zeros((256, 5), np.float32), np.zeros(5, np.float32), np.eye(5, dtype=np.float32))
    weights = np.zeros((1 << 8, 5), dtype=np.float32)
    weights[3] = [0.5, -0.2, 0.1, 0.0, 0.3]
    tagger = OrgTagger(weights, np.zeros((5, 5), np.float32), 8, "orgs-test", Lexicon({"区人社局": 3}), state, layer)
    tagger.save(tmp_path / "t.npz")
    loaded = OrgTagger.load(tmp_path / "t.npz")
    assert loaded.sequence_layer is not None and loaded.sequence_layer.weight == 1.5
    np.testing.assert_array_equal(loaded._trans, tagger._trans)
    for x in examples:
        assert loaded.spans(x.text, x.words, x.marks, x.states) == tagger.spans(x.text, x.words, x.marks, x.states)
    with pytest.raises(ValueError, match="state layer"):
        OrgTagger(weights, np.zeros((5, 5), np.float32), 8, "orgs-test", None, None, layer)


def test_the_sequence_layer_alone_finds_names_only_its_states_mark() -> None:
    """Random characters and words: only the encoder states tell where the names are, and the layer learns it."""
    rng = np.random.default_rng(5)
    pool = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
    # the head mark makes each chunk a candidate for the layer; it says nothing about where the name is
    marks = {**{ch: [] for ch in CHANNELS}, "head": [(0, 1)]}

    def example(i: int, chars: list[str]) -> Example:
        return state_marked_example(i, chars, rng, dim=256, marks=marks)

    # ~400 optimiser steps (batches of 64 chunks): a layer learns from scratch, so it needs steps more than records
    model, vocab = fit_model([example(i, pool[:300]) for i in range(2000)], epochs=12, seed=0, hidden=8, proj=16,
                             dropout=0.0)
    layer = to_layer(model, vocab, 1.0)
    zero_state = StateLayer(np.zeros((256, 5), np.float32), np.zeros(5, np.float32), np.zeros((5, 5), np.float32))
    alone = OrgTagger(np.zeros((1 << 8, 5), np.float32), np.zeros((5, 5), np.float32), 8, "t", None, zero_state, layer)
    unseen = [example(1000 + i, pool[300:]) for i in range(30)]
    found = sum(alone.spans(x.text, x.words, x.marks, x.states) == x.gold for x in unseen)
    assert found >= 27, found
    without = OrgTagger(np.zeros((1 << 8, 5), np.float32), np.zeros((5, 5), np.float32), 8, "t", None, zero_state)
    assert sum(without.spans(x.text, x.words, x.marks, x.states) == x.gold for x in unseen) == 0


def test_the_layer_reads_only_chunks_that_touch_an_organisation_candidate() -> None:
    text = "我家住在石桥铺，在巴渝老灶火锅当服务员，老板拖欠工资，找过区人社局。"
    chunks = OrgTagger.chunks(text)
    assert len(chunks) == 4
    marks = {"place": [(4, 7)], "head": [(32, 33)]}
    lexicon = [(9, 15, 4)]  # 巴渝老灶火锅 as a training name
    assert candidate_chunks(len(text), chunks, marks, lexicon) == [chunks[1], chunks[3]]  # a place alone is no candidate
    assert candidate_chunks(len(text), chunks, {"place": [(4, 7)]}, []) == []
    assert candidate_chunks(len(text), chunks, {"lac_org": [(8, 10)]}, []) == [chunks[1]]
