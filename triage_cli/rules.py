"""`triage rules check|explain`: validate the decision-rule file and show the trace for petitions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

rules_app = typer.Typer(help="决策规则 (decision rules R01–R19: validate, list, explain)", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"错误: {message}", err=True)
    return typer.Exit(1)


def describe_actions(then: dict[str, Any]) -> str:
    """One-line summary of a rule's actions for the rule table."""
    parts = []
    for key in ("track", "department"):
        if key in then:
            parts.append(f"{key}={then[key]}")
    if then.get("co_departments"):
        parts.append("co+" + ",".join(then["co_departments"]))
    if then.get("flags"):
        parts.append("flags+" + ",".join(then["flags"]))
    if "status" in then:
        parts.append(then["status"])
    if "propose" in then:
        parts.append(f"propose {then['propose']['status']} {then['propose']['code']} (needs_review)")
    for key in ("priority", "procedure", "level"):
        if key in then:
            parts.append(f"{key}={then[key]}")
    for key in ("stop", "route", "guidance", "deadlines", "review_window", "review_if_model_disagrees"):
        if then.get(key):
            parts.append(key)
    if "sample" in then:
        parts.append(f"sample {then['sample']}")
    if "reason" in then:
        parts.append("reason")
    return "; ".join(parts)


@rules_app.command("check")
def rules_check(
    file: Path = typer.Option(None, "--file", "-f", help="Rule file (default data/policy/rules.toml)"),
    operators: bool = typer.Option(False, "--operators", help="Also list the condition operators"),
) -> None:
    """Load and validate the rule file, then print the rules in evaluation order."""
    from triage.errors import TaxonomyError
    from triage.rules import load_rules
    from triage.rules.conditions import DOCS
    from triage.taxonomy import load_taxonomy

    if file is not None and not file.exists():
        raise _fail(f"{file}: file not found")
    try:
        rules = load_rules(load_taxonomy(), file)
    except TaxonomyError as exc:
        raise _fail(str(exc)) from exc
    cal = rules.calendar
    typer.echo(f"{rules.path}: rules_version {rules.version}, {len(rules.rules)} rules, "
               f"{len(rules.deadlines)} deadlines, {len(rules.windows)} channel windows; calendar {cal.describe()}")
    typer.echo("thresholds: " + ", ".join(f"{k}={v}" for k, v in rules.thresholds.items() if not isinstance(v, dict)))
    typer.echo(f"{'#':>2}  {'id':<5} {'name':<30} actions")
    for i, rule in enumerate(rules.rules, 1):
        typer.echo(f"{i:>2}  {rule.id:<5} {rule.name:<30} {describe_actions(dict(rule.then))}")
    if operators:
        typer.echo("\ncondition operators:")
        for name in sorted(DOCS):
            typer.echo(f"  {name:<24} {DOCS[name]}")


def _records(text: str | None, file: Path | None, submitted_at: str | None, channel: str | None) -> list[dict[str, Any]]:
    if (text is None) == (file is None):
        raise _fail("give exactly one of --text or --file")
    if text is not None:
        # An identified (synthetic) petitioner, so R02 does not fire on every --text; use --file to test R02.
        rec: dict[str, Any] = {"id": "cli-1", "text": text, "petitioner": {"name": "命令行", "phone": "13800000000"}}
        if submitted_at:
            rec["submitted_at"] = submitted_at
        if channel:
            rec["channel"] = channel
        return [rec]
    assert file is not None
    out = []
    with file.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise _fail(f"{file}:{n}: not valid JSON ({exc.msg})") from exc
    return out


@rules_app.command("explain")
def rules_explain(
    text: str = typer.Option(None, "--text", "-t", help="Petition text"),
    file: Path = typer.Option(None, "--file", "-f",
                              help="JSONL of petition records (a `links` list per record is used as the duplicate links)"),
    model: Path = typer.Option(None, "--model", help="Model directory (default TRIAGE_MODEL_DIR / models/default)"),
    rules_file: Path = typer.Option(None, "--rules", help="Rule file (default data/policy/rules.toml)"),
    submitted_at: str = typer.Option(None, "--submitted-at", help="Received time for --text, e.g. 2026-03-01T10:00:00+08:00"),
    channel: str = typer.Option(None, "--channel", help="online | letter | visit | phone (for --text)"),
    ner: bool = typer.Option(False, "--ner/--no-ner", help="Also run the LAC NER model (slower)"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per petition on stdout"),
) -> None:
    """Triage petitions with the real extractor, model and rules; print every rule's outcome and the decision."""
    from pydantic import ValidationError

    from serving.sessions import OnnxClassifier
    from serving.settings import ServiceSettings
    from triage.entities import EntityExtractor
    from triage.errors import TriageError
    from triage.pipeline import TriagePipeline
    from triage.rules import load_decider
    from triage.schemas import DuplicateLink, Petition
    from triage.taxonomy import load_taxonomy

    records = _records(text, file, submitted_at, channel)
    settings = ServiceSettings()
    try:
        taxonomy = load_taxonomy(settings.data_dir)
        decider = load_decider(taxonomy, rules_file)
        ner_tagger = None
        if ner:
            from serving.ner import word_tagger

            ner_tagger = word_tagger()
        extractor = EntityExtractor(taxonomy.gazetteer, ner_tagger)
        classifier = OnnxClassifier(model or settings.model_dir, taxonomy, intra_op_threads=settings.onnx_threads)
    except TriageError as exc:
        raise _fail(str(exc)) from exc

    class RecordLinks:
        version = "explain-fixed-links"
        links: list[DuplicateLink] = []

        def link(self, petition: Petition, text: str, entities: Any) -> list[DuplicateLink]:
            return self.links

    linker = RecordLinks()
    pipeline = TriagePipeline(taxonomy, extractor=extractor, classifier=classifier, linker=linker, decider=decider)
    failed = 0
    for n, rec in enumerate(records, 1):
        try:
            petition = Petition.model_validate(rec)
            linker.links = [DuplicateLink.model_validate(x) for x in rec.get("links", [])]
            result = pipeline.triage(petition)
            _, outcomes = decider.evaluate(_context(pipeline, petition, result))
        except ValidationError as exc:
            failed += 1
            first = exc.errors()[0]
            typer.echo(f"记录{n}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", err=True)
            continue
        d = result.decision
        if as_json:
            sys.stdout.write(json.dumps({
                "id": petition.id, "decision": d.model_dump(mode="json"),
                "rules": [{"id": o.rule_id, "name": o.name, "outcome": o.outcome, "evidence": list(o.evidence)}
                          for o in outcomes],
                "suggestions": {k: [[ls.label, round(ls.score, 4)] for ls in s.labels[:3]]
                                for k, s in result.suggestions.items()},
                "place": result.entities.place.model_dump(),
            }, ensure_ascii=False) + "\n")
            continue
        typer.echo(f"== {petition.id or f'#{n}'}  ({len(result.normalized_text)} 字)")
        for fld, s in result.suggestions.items():
            typer.echo(f"   model {fld}: " + ", ".join(f"{ls.label} {ls.score:.2f}" for ls in s.labels[:3]))
        place = result.entities.place
        typer.echo(f"   place: {place.district} / {place.subdivision} ({place.basis})")
        for o in outcomes:
            if o.outcome == "not_matched" and not o.evidence:
                continue
            mark = {"fired": "✔", "skipped": "↷", "not_matched": "·"}[o.outcome]
            typer.echo(f"   {mark} {o.rule_id:<5} {o.name:<30} {'；'.join(o.evidence)}")
        typer.echo(f"   → {d.track} / {d.department}{' + ' + ','.join(d.co_departments) if d.co_departments else ''}"
                   f" / flags [{', '.join(d.flags)}] / {d.status}"
                   f"{' (建议 ' + d.proposed_status + ')' if d.proposed_status else ''} / {d.priority} / {d.procedure}"
                   f" / {d.handling_unit or '属地未定'}")
        for r in d.reasons:
            typer.echo(f"     {r.rule_id}: {r.message}")
        for dl in d.deadlines:
            typer.echo(f"     期限 {dl.kind}: {dl.due.isoformat()}{' (提示)' if dl.warning else ''}"
                       f"{' (估算)' if dl.estimated else ''} — {dl.basis}")
        typer.echo(f"     rules {d.rules_version}; thresholds {d.thresholds}; models {d.model_versions}")
    if failed:
        raise typer.Exit(1)


def _context(pipeline: Any, petition: Any, result: Any) -> Any:
    """The DecisionContext the pipeline built, rebuilt from its result (for the per-rule outcomes)."""
    from triage.pipeline import DecisionContext

    versions = {name: s.model_version for name, s in result.suggestions.items()}
    versions["extractor"] = pipeline.extractor.version
    versions["linker"] = pipeline.linker.version
    return DecisionContext(petition, result.normalized_text, result.entities, result.suggestions, result.links,
                           pipeline.taxonomy, versions)
