"""Organisations read in real public messages (data/corpus/real/orgs_*.jsonl, real/ORGS.md): the answer check and
the loading of the answers as extra training text for the organisation tagger."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from training.corpus import PUBLIC_DIR
from training.orgs import REAL, load_real_examples, real_answers
from triage.entities import EntityExtractor
from triage.words import WordTagger

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("org_sample", ROOT / "data/corpus/tools/org_sample.py")
org_sample = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(org_sample)  # type: ignore[union-attr]

needs_public = pytest.mark.skipif(not (PUBLIC_DIR / "teddy2020_replies.jsonl").exists(),
                                  reason="the real messages need ../shared/data/public")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_check_accepts_surfaces_of_the_text(tmp_path: Path) -> None:
    texts = {"a-1": "我在A市住建局反映过，金港湾小区物业不管", "a-2": "路灯坏了"}
    path = _write(tmp_path / "orgs_O9.jsonl", [{"id": "a-1", "orgs": ["A市住建局", "金港湾小区"], "annotator": "O9"},
                                               {"id": "a-2", "orgs": [], "annotator": "O9"}])
    problems, counts = org_sample.check(path, texts)
    assert problems == []
    assert counts == {"messages": 2, "surfaces": 2}


def test_check_reports_each_kind_of_mistake_with_its_line(tmp_path: Path) -> None:
    texts = {"a-1": "我在A市住建局反映过", "a-2": "路灯坏了"}
    path = _write(tmp_path / "orgs_O9.jsonl", [
        {"id": "a-1", "orgs": ["A市住建委"], "annotator": "O9"},  # not in the text
        {"id": "a-1", "orgs": [], "annotator": "O9"},  # answered twice
        {"id": "b-7", "orgs": [], "annotator": "O9"},  # not in the selection
        {"id": "a-2", "orgs": ["路灯", "路灯"], "annotator": "O8"},  # repeated surface, another reader's code
    ])
    problems, _ = org_sample.check(path, texts)
    assert problems == [
        "line 1: 'A市住建委' does not occur in the text of a-1",
        "line 2: id a-1 answered twice",
        "line 3: id 'b-7' is not in the selection",
        "line 4: a surface is listed twice",
        "line 4: annotator must be 'O9'",
    ]


def test_an_id_answered_in_two_files_is_an_error(tmp_path: Path) -> None:
    a = _write(tmp_path / "orgs_O1.jsonl", [{"id": "x-1", "orgs": [], "annotator": "O1"}])
    b = _write(tmp_path / "orgs_O2.jsonl", [{"id": "x-1", "orgs": ["某局"], "annotator": "O2"}])
    assert real_answers([a]) == {"x-1": []}
    with pytest.raises(ValueError, match="x-1 is answered in another line or file"):
        real_answers([a, b])


@pytest.fixture(scope="module")
def rules(taxonomy) -> EntityExtractor:  # type: ignore[no-untyped-def]
    return EntityExtractor(taxonomy.gazetteer, WordTagger.load(), departments=taxonomy.responsibilities.values(),
                           org_tagger=None)


@pytest.mark.slow
@needs_public
def test_committed_answers_load_as_training_examples_of_the_real_train_split(rules: EntityExtractor) -> None:
    answers = real_answers()
    assert sorted(REAL.glob("orgs_*.jsonl")), "no committed answer file"
    examples = load_real_examples(rules, rules.ner, answers=answers)
    assert len(examples) == len(answers)
    by_id = {x.id: x for x in examples}
    for rid, surfaces in answers.items():
        x = by_id[rid]
        assert x.group.startswith("real:")
        found = {x.text[s:e] for s, e in x.gold}
        # every surface is marked unless a longer listed surface covers all its occurrences
        for surface in surfaces:
            assert surface in found or any(surface in other and other in found for other in surfaces if other != surface)


@pytest.mark.slow
@needs_public
def test_a_surface_missing_from_its_text_or_a_message_outside_train_is_refused(rules: EntityExtractor) -> None:
    rid, surfaces = next((k, v) for k, v in real_answers().items() if v)
    with pytest.raises(ValueError, match="does not occur in the normalised text"):
        load_real_examples(rules, rules.ner, answers={rid: [*surfaces, "不存在的某某公司"]})
    from training.corpus import materialize_real, real_splits

    dev_id = real_splits(materialize_real())["dev"][0]["id"]
    with pytest.raises(ValueError, match="not in the real train split"):
        load_real_examples(rules, rules.ner, answers={dev_id: []})
