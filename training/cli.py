"""Training-side commands mounted in `triage`: data tools (and train/evaluate/export/promote)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(help="领域数据与语料 (domain data files and the labelled corpus)")


@data_app.command("validate")
def data_validate(
    data_dir: Path = typer.Option(None, help="Data directory (default: the repository's data/)"),
) -> None:
    """Load and cross-check every domain data file (labels, departments, places, rules)."""
    from triage.errors import TaxonomyError
    from triage.taxonomy import DATA_DIR, load_taxonomy

    try:
        t = load_taxonomy(data_dir or DATA_DIR)
    except TaxonomyError as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    g = t.gazetteer
    typer.echo(
        f"taxonomy_version {t.version}: {len(t.tracks)} tracks, {len(t.departments)} departments, "
        f"{len(t.request_types)} request types, {len(t.flags)} flags; {len(g.districts)} districts, "
        f"{sum(len(s) for s in g.subdivisions.values())} 街道/乡镇, {len(g.legacy)} legacy names; "
        f"rules {t.rules_version} ({len(t.rules)} rules)"
    )


@data_app.command("dict")
def data_dict(
    check: bool = typer.Option(False, "--check", help="Only verify the committed file is up to date"),
) -> None:
    """Regenerate data/dictionaries/jieba_user.txt from the data files."""
    from training.dictionary import write_dictionary

    path, n, up_to_date = write_dictionary(check=check)
    if check and not up_to_date:
        typer.echo(f"{path} is out of date: run `triage data dict`", err=True)
        raise typer.Exit(1)
    typer.echo(f"{path}: {n} entries{' (unchanged)' if up_to_date else ''}")


@data_app.command("build")
def data_build() -> None:
    """Rebuild data/corpus/written/{train,dev,test}.jsonl from the writers' raw files."""
    from training.corpus import build_written
    from triage.taxonomy import load_taxonomy

    report = build_written(load_taxonomy())
    for p in report.problems:
        typer.echo(f"警告: {p}", err=True)
    typer.echo(f"{report.records} records: " + ", ".join(f"{k} {v}" for k, v in report.per_split.items()))


@data_app.command("duty")
def data_duty(
    out: Path = typer.Option(Path("data/datasets/duty/departments.jsonl"), "--out", "-o",
                             help="JSONL to write (gitignored; `make train-default` trains the department head on it)"),
) -> None:
    """Write the responsibility list (职责清单) as one department-labelled training row per department."""
    from training.corpus import duty_rows
    from training.datasets import write_jsonl
    from triage.taxonomy import load_taxonomy

    rows = duty_rows(load_taxonomy())
    write_jsonl(out, rows)
    typer.echo(f"{len(rows)} departments → {out}")


@data_app.command("check")
def data_check(
    require_targets: bool = typer.Option(False, "--require-targets", help="Fail when a corpus quota is not met"),
) -> None:
    """Validate the labelled corpus (schema, codes, spans, checksums, split leakage) and print counts."""
    from training.datacheck import run_check
    from triage.taxonomy import load_taxonomy

    result = run_check(load_taxonomy())
    for line in result.lines:
        typer.echo(line)
    for e in result.errors[:200]:
        typer.echo(f"错误: {e}", err=True)
    if result.errors:
        typer.echo(f"{len(result.errors)} problem(s) found", err=True)
        raise typer.Exit(1)
    if require_targets and not all(result.targets.values()):
        typer.echo("some corpus targets are not met", err=True)
        raise typer.Exit(1)
    typer.echo("data check passed")


@data_app.command("agreement")
def data_agreement(
    show: str = typer.Option(None, help="Also list the disagreements on this field (track, department …)"),
) -> None:
    """Per-field agreement and Cohen's kappa of the independent second labelling."""
    from training.agreement import agreement, disagreements, to_json

    try:
        typer.echo(to_json(agreement()))
    except FileNotFoundError as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    if show:
        for d in disagreements(field=show):
            typer.echo(json.dumps(d, ensure_ascii=False))
