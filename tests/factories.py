"""Test data builders (synthetic petitions only, never real citizen data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from triage.identity import id_check_digit

if TYPE_CHECKING:
    from training.orgs import Example

# A fake but well-formed ID number: 500106 (沙坪坝区), born 1985-06-15, sequence 123.
FAKE_ID_17 = "50010619850615123"
FAKE_ID = FAKE_ID_17 + id_check_digit(FAKE_ID_17)
FAKE_PHONE = "13800001234"


def make_petition(text: str = "小区路灯坏了三个月没人修", **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"text": text}
    record.update(overrides)
    return record


def state_marked_example(i: int, chars: Sequence[str], rng: np.random.Generator, dim: int = 4,
                         marks: Mapping[str, list[tuple[int, int]]] | None = None) -> Example:
    """An organisation-tagger training record whose name only its encoder states mark: random characters around and
    in the name, every word a one-character "n"; state dims 0 (outside), 1 (begin), 2 (inside), 3 (end), plus noise."""
    from training.orgs import Example
    from triage.orgs import OrgTagger

    pre, name, post = (int(rng.integers(a, b)) for a, b in ((1, 5), (3, 6), (1, 5)))
    text = "".join(rng.choice(list(chars), size=pre + name + post))
    s, e = pre, pre + name
    states = np.zeros((len(text), dim), dtype=np.float32)
    states[:, 0] = 1.0
    states[s:e] = 0.0
    states[s, 1], states[s + 1:e - 1, 2], states[e - 1, 3] = 1.0, 1.0, 1.0
    states += rng.normal(0, 0.05, states.shape).astype(np.float32)
    words = [(k, k + 1, "n") for k in range(len(text))]
    return Example(str(i), str(i), text, words, dict(marks or {}), [(s, e)], OrgTagger.chunks(text), states)
