"""DOMAIN.md §5 examples E01–E20 as acceptance fixtures (tests/fixtures/domain_examples.jsonl).

Each record carries the expected outcome copied from DOMAIN §5 (`domain` is the line verbatim,
`expected` its transcription; `deviation` explains the few documented differences). Two modes:

* fixture scores — the record's hand-written `scores` stand in for the model, entities come from
  the real EntityExtractor (patterns + gazetteer, no LAC): tests the rules alone;
* default model — the real pipeline: EntityExtractor + the committed ONNX model (models/default via
  serving.sessions.OnnxClassifier) + the rule decider, with the record's duplicate links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.rules.support import ROOT, context, decider, extractor, load_examples
from triage.pipeline import TriagePipeline
from triage.schemas import Decision, DuplicateLink, Petition

EXAMPLES = load_examples()
IDS = [e["id"] for e in EXAMPLES]


def assert_expected(decision: Decision, district: str | None, example: dict[str, Any]) -> None:
    exp = example["expected"]
    got = {
        "track": decision.track, "department": decision.department, "co_departments": sorted(decision.co_departments),
        "flags": sorted(decision.flags), "proposed_status": decision.proposed_status, "priority": decision.priority,
        "procedure": decision.procedure, "district": district,
    }
    want = {**{k: exp[k] for k in got}, "co_departments": sorted(exp["co_departments"]), "flags": sorted(exp["flags"])}
    assert got == want, f"{example['id']}: DOMAIN says {example['domain']}"
    if exp["status"] == "auto" and "R19" in decision.rules_fired:
        # The 5% audit sample may send an auto case to review; then R19 must be the only reason.
        assert decision.status == "needs_review"
    else:
        assert decision.status == exp["status"], f"{example['id']}: rules fired {decision.rules_fired}"
    # The trace is complete on every decision.
    assert decision.rules_version and "+" in decision.rules_version
    assert decision.rules_fired and "R15" in decision.rules_fired and "R17" in decision.rules_fired
    assert decision.model_versions
    assert {d.kind for d in decision.deadlines} >= {"registration", "objection"}


def test_fixture_file_covers_e01_to_e20() -> None:
    assert [f"E{i:02d}" for i in range(1, 21)] == IDS
    for e in EXAMPLES:
        assert e["expected"]["track"] in e["domain"].split("/")[0], e["id"]


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_domain_example_with_fixture_scores(taxonomy, example: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    s = example["scores"]
    ctx = context(taxonomy, example["text"], track=s["track"], department=s["department"],
                  request_type=s["request_type"], links=example["links"], submitted_at=example["submitted_at"],
                  channel=example["channel"], id=example["id"])
    decision = decider(taxonomy, example["submitted_at"][:10]).decide(ctx)
    assert_expected(decision, ctx.entities.place.district, example)


class _FixtureLinker:
    version = "fixture-links"

    def __init__(self) -> None:
        self.links: list[DuplicateLink] = []

    def link(self, petition: Petition, text: str, entities: object) -> list[DuplicateLink]:
        return self.links


@pytest.fixture(scope="module")
def default_model(taxonomy):  # type: ignore[no-untyped-def]
    from serving.sessions import OnnxClassifier

    model_dir = ROOT / "models" / "default"
    assert (model_dir / "manifest.json").exists(), "the default model is committed in models/default"
    return OnnxClassifier(Path(model_dir), taxonomy)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_domain_example_through_pipeline_with_default_model(taxonomy, default_model, example: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    linker = _FixtureLinker()
    linker.links = [DuplicateLink.model_validate(x) for x in example["links"]]
    petition = Petition.model_validate({k: example[k] for k in ("id", "text", "submitted_at", "channel", "petitioner")})
    pipeline = TriagePipeline(taxonomy, extractor=extractor(taxonomy), classifier=default_model, linker=linker,
                              decider=decider(taxonomy, example["submitted_at"][:10]))
    result = pipeline.triage(petition)
    assert_expected(result.decision, result.entities.place.district, example)
    assert result.decision.model_versions["track"].startswith("default@")
    assert result.decision.model_versions["linker"] == "fixture-links"


def test_e10_deadline_risk_counts_from_forty_days_before(taxonomy) -> None:  # type: ignore[no-untyped-def]
    e10 = next(e for e in EXAMPLES if e["id"] == "E10")
    s = e10["scores"]
    ctx = context(taxonomy, e10["text"], track=s["track"], department=s["department"], submitted_at=e10["submitted_at"])
    d = decider(taxonomy, "2026-05-11").decide(ctx)
    window = {x.kind: x for x in d.deadlines}
    # Act 40 days before 2026-05-11 = 2026-04-01; +60 days = 2026-05-31, a Sunday → Monday 2026-06-01.
    assert window["admin_reconsideration"].due.isoformat() == "2026-06-01"
    assert window["admin_reconsideration"].warning and not window["admin_reconsideration"].estimated
    # 6 months from 2026-04-01 = 2026-10-01, inside the National Day holiday (10-01..10-07) → 2026-10-08.
    assert window["admin_litigation"].due.isoformat() == "2026-10-08"
    assert any("剩余约21日" in r.message for r in d.reasons)
    assert any(r.rule_id == "R09b" and "重庆市人民政府" in r.message for r in d.reasons)


def test_e17_without_link_still_only_proposes(taxonomy) -> None:  # type: ignore[no-untyped-def]
    e17 = next(e for e in EXAMPLES if e["id"] == "E17")
    ctx = context(taxonomy, e17["text"], track={"petition": 0.8}, department="district", links=[])
    d = decider(taxonomy).decide(ctx)
    assert d.status == "needs_review" and d.proposed_status == "not_accepted"
    assert "R05b" in d.rules_fired and "R05" not in d.rules_fired
