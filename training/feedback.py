"""`triage feedback export`: reviewed cases → de-identified training records.

Every case whose current decision was made or confirmed by an officer (decision source
"human", not merged) becomes one JSONL record in the petition-record format `triage train`,
`triage evaluate` and `triage promote` read: ``id``, ``text`` and the gold fields ``track``,
``department``, ``request_type``, ``district`` plus provenance (``source``: feedback,
``overridden``: whether the officer changed the system's track or department, ``reviewed_at``).

The text is de-identified (`triage.pii.deidentify`: names, officials, phone and ID numbers, bank
cards, plates and house numbers replaced by placeholders; identifier-shaped digit runs the
extractor missed go too). Petitioner fields are never exported. Confidential (检举控告) cases are
left out unless --include-confidential is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select

logger = logging.getLogger(__name__)

GOLD_FIELDS = ("track", "department", "request_type", "district")


def feedback_records(store: Any, *, since: datetime | None = None, include_confidential: bool = False,
                     batch: int = 500) -> Iterator[dict[str, Any]]:
    """One de-identified training record per human-decided case, in case id order."""
    from triage.pii import deidentify
    from triage.schemas import Entities
    from triage.store.models import Case, DecisionRow

    last_id = ""
    while True:
        with store.read() as s:
            reviewed = select(DecisionRow.case_id).where(DecisionRow.source == "human")
            if since is not None:
                reviewed = reviewed.where(DecisionRow.created_at >= since)
            q = select(Case).where(Case.id.in_(reviewed.distinct()), Case.id > last_id)
            if not include_confidential:
                q = q.where(Case.confidential.is_(False))
            cases = s.scalars(q.order_by(Case.id).limit(batch)).all()
            if not cases:
                return
            ids = [c.id for c in cases]
            rows = s.execute(select(DecisionRow.case_id, DecisionRow.source, DecisionRow.decision, DecisionRow.created_at)
                             .where(DecisionRow.case_id.in_(ids)).order_by(DecisionRow.case_id, DecisionRow.id)).all()
        history: dict[str, list[Any]] = {}
        for r in rows:
            history.setdefault(r.case_id, []).append(r)
        for case in cases:
            last_id = case.id
            decisions = history.get(case.id, [])
            if not decisions or decisions[-1].source != "human" or case.status == "merged":
                continue
            human = decisions[-1]
            system = next((d.decision for d in reversed(decisions) if d.source == "system"), None)
            entities = Entities.model_validate(case.entities) if case.entities else Entities()
            record: dict[str, Any] = {"id": case.id, "text": deidentify(case.text, entities.items)}
            if case.title:
                record["title"] = deidentify(case.title, [])
            if case.submitted_at:
                record["submitted_at"] = case.submitted_at.isoformat()
            if case.channel:
                record["channel"] = case.channel
            for f in GOLD_FIELDS:
                value = human.decision.get(f) if f != "district" else case.district
                if value is not None:
                    record[f] = value
            record["source"] = "feedback"
            record["overridden"] = system is not None and any(
                system.get(f) != human.decision.get(f) for f in ("track", "department"))
            record["reviewed_at"] = human.created_at.isoformat()
            yield record


def export_feedback(store: Any, out: Path, **kwargs: Any) -> dict[str, int]:
    """Write the records to `out` (JSONL, atomically via a temporary file); return counts."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    counts = {"records": 0, "overridden": 0}
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in feedback_records(store, **kwargs):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            counts["records"] += 1
            counts["overridden"] += int(rec["overridden"])
    tmp.replace(out)
    return counts


feedback_app = typer.Typer(help="审核反馈 (reviewed cases as training data)", no_args_is_help=True)


@feedback_app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", "-o", dir_okay=False, help="JSONL file to write"),
    url: str = typer.Option(None, "--db", "--url", help="SQLAlchemy URL (default TRIAGE_DATABASE_URL)"),
    since: datetime = typer.Option(None, help="Only decisions at or after this time (ISO 8601 with time zone)"),
    include_confidential: bool = typer.Option(False, help="Also export confidential (检举控告) cases"),
) -> None:
    """Export officer-reviewed cases as de-identified training records (for triage train / promote)."""
    from triage_cli.store import open_store

    if since is not None and since.tzinfo is None:
        typer.echo("错误: --since 须带时区，例如 2026-03-01T00:00:00+08:00", err=True)
        raise typer.Exit(2)
    counts = export_feedback(open_store(url), out, since=since, include_confidential=include_confidential)
    typer.echo(json.dumps({"out": str(out), **counts}, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
