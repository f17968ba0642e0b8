"""`triage train-linker`, `linker-data`, `linker-real`, `hotspots`: the duplicate linker's commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from training.linking import DEFAULT_OUT, WRITTEN, history_split, read_jsonl

logger = logging.getLogger(__name__)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def train_linker_cmd(
    out: Path = typer.Option(DEFAULT_OUT, "--out", "-o", help="Linker model directory to write"),
    ner: bool = typer.Option(True, "--ner/--no-ner", help="Extract entities with the LAC NER model (as served)"),
    c: float = typer.Option(1.0, "--C", help="Inverse L2 strength of the verifier's logistic regression"),
    min_precision: float = typer.Option(0.95, help="Dev precision the decision threshold must reach"),
) -> None:
    """Train the duplicate linker: encoder idf, verifier on written/train, calibration and threshold on written/dev."""
    _logging()
    from training.linking import train_linker

    m = train_linker(out, ner=ner, c=c, min_precision=min_precision)
    d = m["dev"]["duplicates"]
    typer.echo(f"linker {m['version']} → {out}")
    typer.echo(f"  train pairs {m['verifier']['train_pairs']} (positive {m['verifier']['train_positive']}); "
               f"threshold {m['threshold']['value']} ({m['threshold']['rule']})")
    typer.echo(f"  dev: precision {d['precision']} recall {d['recall']} f1 {d['f1']} (tp {d['tp']} fp {d['fp']} fn {d['fn']}); "
               f"candidate recall {m['dev']['candidate_recall']}; pair ECE {m['dev']['pair_ece']}")


def linker_data_cmd(
    split: str = typer.Option("test", "--split", "-s", help="Written corpus split: train, dev or test"),
    out: Path = typer.Option(Path("data/datasets/linking"), "--out", "-o", help="Directory for SPLIT-history/-eval.jsonl"),
) -> None:
    """Write the --history and --data files of a written split (deterministic; see training.linking.history_split)."""
    if split not in ("train", "dev", "test"):
        raise typer.BadParameter("split must be train, dev or test")
    rows = read_jsonl(WRITTEN / f"{split}.jsonl")
    history, evaluated = history_split(rows)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("history", history), ("eval", evaluated)):
        with (out / f"{split}-{name}.jsonl").open("w", encoding="utf-8") as fh:
            for r in part:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    dup = sum(1 for r in evaluated if r.get("duplicate_of"))
    typer.echo(f"{out / f'{split}-history.jsonl'}: {len(history)} existing cases")
    typer.echo(f"{out / f'{split}-eval.jsonl'}: {len(evaluated)} records ({dup} re-submissions, "
               f"{len(evaluated) - dup} with duplicate_of null)")


def linker_real_cmd(
    model: Path = typer.Option(DEFAULT_OUT, "--model", "-m", help="Linker model directory"),
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON report"),
) -> None:
    """Same-issue pairs of the real hot messages (data/corpus/real/hot_pairs_verified.jsonl): pair and retrieval figures."""
    _logging()
    from training.linking_hotspots import evaluate_hotspots
    from training.linking_real import evaluate_real_pairs

    report = {"links": evaluate_real_pairs(model), "hotspots": evaluate_hotspots(model)}
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(json.dumps(report, ensure_ascii=False, indent=1))


def register(app: typer.Typer) -> None:
    app.command("train-linker")(train_linker_cmd)
    app.command("linker-data")(linker_data_cmd)
    app.command("linker-real")(linker_real_cmd)
    app.command("hotspots")(hotspots_cmd)


def hotspots_cmd(
    since: str = typer.Option(..., "--since", help="First day (YYYY-MM-DD, inclusive, +08:00)"),
    until: str = typer.Option(None, "--until", help="Day after the last (YYYY-MM-DD, exclusive); default: now"),
    url: str = typer.Option(None, "--db", "--url", help="Database URL (default TRIAGE_DATABASE_URL)"),
    model: Path = typer.Option(DEFAULT_OUT, "--model", "-m", help="Linker model directory (issue.json)"),
    min_size: int = typer.Option(3, min=2, help="Smallest group reported as an issue"),
    top: int = typer.Option(20, min=1, help="Issues to print"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """热点: group the stored cases submitted in a window into issues, with counts, districts and weekly trend."""
    _logging()
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from triage.errors import TriageError
    from triage.linking.hotspots import load_hotspot_finder
    from triage.linking.memory import MemoryCaseIndex
    from triage.store.index import SqlCaseIndex
    from triage.store.models import Case
    from triage_cli.store import open_store

    tz = timezone(timedelta(hours=8))
    try:
        start = datetime.fromisoformat(since).replace(tzinfo=tz)
        end = datetime.fromisoformat(until).replace(tzinfo=tz) if until else datetime.now(tz)
    except ValueError as exc:
        raise typer.BadParameter("dates are YYYY-MM-DD") from exc
    try:
        store = open_store(url)
        with store.read() as s:
            ids = list(s.scalars(select(Case.id).where(Case.submitted_at >= start, Case.submitted_at < end)
                                 .order_by(Case.submitted_at)))
        snaps = SqlCaseIndex(store).snapshots(ids)
        finder = load_hotspot_finder(model, min_size=min_size)
    except TriageError as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    # A window-only index: every neighbour found is a case of the window (the store's index would
    # spend the neighbour budget on older cases).
    index = MemoryCaseIndex()
    for snap, feats in zip(snaps, finder.featurizer.features_many([s.text for s in snaps]), strict=True):
        index.add(snap, feats)
    issues = finder.issues(snaps, index, now=min(end, datetime.now(tz)))
    report = {
        "since": start.isoformat(), "until": end.isoformat(), "cases": len(snaps), "issues": len(issues),
        "model": finder.model.version, "threshold": finder.model.threshold,
        "top": [{"count": i.count, "case_ids": i.case_ids, "districts": i.districts, "keywords": i.keywords,
                 "first": i.first.isoformat() if i.first else None, "last": i.last.isoformat() if i.last else None,
                 "weekly": i.weekly, "trend": i.trend} for i in issues[:top]],
    }
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(f"{start:%Y-%m-%d} – {end:%Y-%m-%d}: {len(snaps)} 件, {len(issues)} 个热点（每个至少 {min_size} 件）")
    for n, i in enumerate(issues[:top], 1):
        districts = "、".join(f"{d} {c}" for d, c in i.districts.items())
        weeks = " ".join(f"{w}:{c}" for w, c in i.weekly.items())
        typer.echo(f"{n:>3}. {i.count} 件 | {districts} | 关键词 {'、'.join(i.keywords) or '—'} | 趋势 {i.trend} | {weeks}")
