"""Training-side commands mounted in `triage`: data tools (and train/evaluate/export/promote)."""

from __future__ import annotations

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
