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


_sup_spec = importlib.util.spec_from_file_location("check_supplement", ROOT / "data/corpus/tools/check_supplement.py")
check_supplement = importlib.util.module_from_spec(_sup_spec)  # type: ignore[arg-type]
_sup_spec.loader.exec_module(check_supplement)  # type: ignore[union-attr]


def test_committed_supplement_loads_as_written_domain_training_examples(rules: EntityExtractor) -> None:
    from training.orgs import load_supplement_examples, supplement_answers

    rows = supplement_answers()
    examples = load_supplement_examples(rules, rules.ner)
    assert len(examples) == len(rows) >= 1000
    for x in examples:
        assert x.domain == "written" and x.group == "sup:" + x.id
        surfaces = rows[x.id][1]
        found = {x.text[s:e] for s, e in x.gold}
        for surface in surfaces:
            assert surface in found or any(surface in other and other in found for other in surfaces if other != surface)


def test_supplement_check_refuses_identifiers_copies_of_corpus_records_and_missing_surfaces(tmp_path: Path) -> None:
    corpus_text = json.loads((ROOT / "data/corpus/written/test.jsonl").open(encoding="utf-8").readline())["text"]
    path = _write(tmp_path / "orgs_W99.jsonl", [
        {"id": "W99-0001", "style": "online", "text": "我在金港湾小区住，物业乱收费，打电话13812345678也没人管",
         "orgs": ["金港湾小区"], "writer": "W99"},
        {"id": "W99-0002", "style": "letter", "text": corpus_text, "orgs": [], "writer": "W99"},
        {"id": "W99-0003", "style": "poem", "text": "区人社局一直不回复我的投诉，已经三个月了", "orgs": ["区人社局", "县人社局"],
         "writer": "W99"},
        {"id": "W98-0004", "style": "online", "text": "县法院执行局半年了还没执行到位，请领导过问", "orgs": ["县法院执行局"],
         "writer": "W99"},
    ])
    problems, counts = check_supplement.problems_of([path])
    assert counts == {"texts": 4, "surfaces": 4}
    assert "orgs_W99.jsonl:1: a number that looks like an ID or phone number (write none)" in problems
    assert "orgs_W99.jsonl:3: style must be one of ['hotline', 'letter', 'online', 'visit']" in problems
    assert "orgs_W99.jsonl:3: '县人社局' does not occur in the text" in problems
    assert "orgs_W99.jsonl:4: id and writer must be W99 / W99-NNNN" in problems
    assert any(p.startswith("near-duplicate texts") and "W99-0002" in p for p in problems)
    assert len(problems) == 5 + ("orgs_W99.jsonl:2: a number that looks like an ID or phone number (write none)" in problems)
