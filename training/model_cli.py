"""Model commands mounted in `triage`: train, evaluate, promote, split, prepare-corpus.

Each command parses its options and calls a plain function (training.train.train,
training.evaluate.evaluate, training.promote.promote) that tests import directly. Logs go to
stderr; `evaluate --json` prints exactly one JSON object on stdout. Exit codes: 0 ok, 1 error,
3 promotion gate failed, 2 usage error (Click).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from training.config import BASE_CONFIG

logger = logging.getLogger(__name__)

EXIT_GATE_FAILED = 3


def _logging(verbose: bool = False) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_triage_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._triage_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("jieba", "datasets", "urllib3", "matplotlib", "skl2onnx", "fsspec", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    """Mount the model commands on the `triage` app."""
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("promote")(promote_cmd)
    app.command("split")(split_cmd)
    app.command("prepare-corpus")(prepare_corpus_cmd)
    app.command("bench")(bench_cmd)


def train_cmd(
    data: list[Path] = typer.Option(..., "--data", "-d", exists=True, dir_okay=False, help="Training JSONL (repeatable)"),
    label_field: list[str] = typer.Option(
        ["track", "department", "request_type"], "--label-field", "-f", help="Gold field to train a head for (repeatable)"),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write (models/NAME)"),
    dev: list[Path] = typer.Option([], "--dev", exists=True, dir_okay=False,
                                   help="Dev JSONL for metrics, calibration error and the parity check (repeatable)"),
    config: Path = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                help="Training config (TOML; default training/configs/base.toml, or bert.toml with --arch bert)"),
    set_: list[str] = typer.Option([], "--set", help="Override one config value: key.path=value (repeatable)"),
    name: str = typer.Option(None, help="Model name (default: the directory name)"),
    arch: str = typer.Option("linear", help="linear (TF-IDF linear heads) or bert (transformer; needs the transformer extra)"),
    base_model: Path = typer.Option(None, "--base-model", exists=True, file_okay=False,
                                    help="--arch bert: fine-tune this local BERT checkpoint directory (else: from scratch)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train calibrated heads (linear TF-IDF, or a BERT encoder), export ONNX with a parity check, write the manifest."""
    _logging(verbose)
    from training.train import TrainRequest, train
    from triage.errors import TriageError

    if arch not in ("linear", "bert"):
        typer.echo(f"错误: --arch must be linear or bert, not {arch!r}", err=True)
        raise typer.Exit(2)
    if base_model is not None and arch != "bert":
        typer.echo("错误: --base-model needs --arch bert", err=True)
        raise typer.Exit(2)
    try:
        if arch == "bert":
            from training.transformer import BERT_CONFIG, train_transformer

            req = TrainRequest(data=data, fields=list(dict.fromkeys(label_field)), out_dir=out, dev=dev,
                               config_path=config or BERT_CONFIG, overrides=set_, name=name)
            manifest = train_transformer(req, base_model=base_model)
        else:
            manifest = train(TrainRequest(data=data, fields=list(dict.fromkeys(label_field)), out_dir=out, dev=dev,
                                          config_path=config or BASE_CONFIG, overrides=set_, name=name))
    except (ValueError, FileNotFoundError, TriageError) as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{out}: {manifest.name} {manifest.version}")
    typer.echo(f"  model.onnx: {manifest.metrics['artifact_bytes'] / 1e6:.1f} MB")
    for fld in manifest.heads:
        m = manifest.metrics[fld]
        d = m.get("dev")
        dev_txt = (f"dev macro_f1 {d['macro_f1']} accuracy {d['accuracy']}"
                   + (f" top3 {d['top3']}" if "top3" in d else "")
                   + f" ece {d['ece_uncalibrated']}→{d['ece']}") if d else "no dev data"
        typer.echo(f"  {fld}: {len(manifest.heads[fld].labels)} labels, {m['train_rows']} rows, {dev_txt}, "
                   f"parity {manifest.heads[fld].parity_max_abs_diff or 0:.1e}")


def evaluate_cmd(
    data: Path = typer.Option(..., "--data", "-d", exists=True, dir_okay=False, help="Labelled JSONL to evaluate on"),
    model: Path = typer.Option(Path("models/default"), "--model", "-m", help="Model directory"),
    history: Path = typer.Option(None, "--history", help="Existing cases (JSONL) to link against (duplicates metrics)"),
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON report on stdout"),
    predictions: Path = typer.Option(None, "--predictions", "-p", help="Write one prediction line per record"),
    plots: Path = typer.Option(None, "--plots", help="Directory for the PNG plots (default var/eval/MODEL-DATA)"),
    threads: int = typer.Option(1, help="onnxruntime intra-op threads"),
    entity_baseline: bool = typer.Option(False, "--entity-baseline",
                                         help="Also score jieba.posseg on person/place/org (entities_baseline)"),
) -> None:
    """Score a model on a labelled file: macro-F1, accuracy, per class, top-3, latency (DESIGN.md contract)."""
    _logging()
    from training.evaluate import evaluate
    from triage.errors import TriageError

    plots_dir = None
    if not as_json:
        plots_dir = plots or Path("var") / "eval" / f"{model.name}-{data.stem}"
    try:
        report = evaluate(model, data, predictions=predictions, history=history, plots_dir=plots_dir, threads=threads,
                          entity_baseline=entity_baseline)
    except (ValueError, FileNotFoundError, TriageError) as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(f"{report['model']} on {data}: n={report['n']}, latency p50 {report['latency_ms']['p50']} ms, "
               f"p99 {report['latency_ms']['p99']} ms")
    for fld, m in report.items():
        if isinstance(m, dict) and "macro_f1" in m:
            extra = f" top3 {m['top3']}" if "top3" in m else ""
            typer.echo(f"  {fld}: n={m['n']} macro_f1 {m['macro_f1']} accuracy {m['accuracy']}{extra} ece {m['ece']}")
            for kind, path in m.get("plots", {}).items():
                typer.echo(f"    {kind}: {path}")
    for key in ("entities", "entities_baseline"):
        for etype, m in report.get(key, {}).items():
            if isinstance(m, dict) and "exact" in m:
                typer.echo(f"  {key} {etype}: n={m['support']} F1 exact {m['exact']['f1']} overlap {m['overlap']['f1']}")
    if "district" in report:
        typer.echo(f"  district: n={report['district']['n']} accuracy {report['district']['accuracy']}")
    if "duplicates" in report:
        d = report["duplicates"]
        typer.echo(f"  duplicates: precision {d['precision']} recall {d['recall']} f1 {d['f1']} "
                   f"(tp {d['tp']} fp {d['fp']} fn {d['fn']}; {d['history_cases']} history cases, threshold {d['threshold']})")


def promote_cmd(
    candidate: Path = typer.Option(..., "--candidate", exists=True, file_okay=False, help="Candidate model directory"),
    active: Path = typer.Option(Path("models/default"), "--active", help="Active model directory"),
    data: Path = typer.Option(..., "--data", "-d", exists=True, dir_okay=False, help="Fixed labelled split (dev)"),
    margin: float = typer.Option(0.0, min=0.0, help="Allowed drop per gated metric"),
) -> None:
    """Install the candidate as the active model only if it is not worse on the fixed split (else exit 3)."""
    _logging()
    from training.promote import promote
    from triage.errors import TriageError

    try:
        result = promote(candidate, active, data, margin)
    except (ValueError, FileNotFoundError, TriageError) as exc:
        typer.echo(f"错误: {exc}", err=True)
        raise typer.Exit(1) from exc
    for row in result.comparisons:
        typer.echo(f"  {row['field']}.{row['metric']}: active {row['active']} candidate {row['candidate']} "
                   f"Δ {row['delta']} {'ok' if row['ok'] else 'WORSE'}")
    typer.echo(("promoted: " if result.promoted else "not promoted: ") + result.reason)
    if not result.promoted:
        raise typer.Exit(EXIT_GATE_FAILED)


def split_cmd(
    data: Path = typer.Option(..., "--data", "-d", exists=True, dir_okay=False, help="JSONL to split"),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for train/dev/test.jsonl (keep it out of git)"),
    test: float = typer.Option(0.2, min=0.0, max=0.9, help="Test fraction"),
    dev: float = typer.Option(0.2, min=0.0, max=0.9, help="Dev fraction of what is not test"),
    seed: int = typer.Option(20260301, help="Seed of the split"),
    stratify: str = typer.Option(None, help="Field to stratify on (e.g. label)"),
) -> None:
    """Fixed seeded split: test = TEST of the file, dev = DEV of the rest; identical texts stay together."""
    _logging()
    from training.datasets import load_jsonl, split_rows, write_jsonl

    rows = load_jsonl(data).rows
    first = split_rows(rows, {"rest": 1 - test, "test": test}, seed, stratify)
    second = split_rows(first["rest"], {"train": 1 - dev, "dev": dev}, seed + 1, stratify)
    parts = {"train": second["train"], "dev": second["dev"], "test": first["test"]}
    for name, part in parts.items():
        write_jsonl(out / f"{name}.jsonl", part)
    typer.echo(", ".join(f"{k} {len(v)}" for k, v in parts.items()) + f" → {out}")


def prepare_corpus_cmd(
    out: Path = typer.Option(Path("data/datasets/real"), "--out", "-o",
                             help="Directory for the materialised real corpus splits (gitignored)"),
) -> None:
    """Join the committed real-corpus labels with ../shared/data/public into train/dev/test JSONL."""
    _logging()
    from training.corpus import materialize_real, real_splits
    from training.datasets import write_jsonl

    splits = real_splits(materialize_real())
    for name in ("train", "dev", "test", "active"):
        write_jsonl(out / f"{name}.jsonl", splits.get(name, []))
    typer.echo(", ".join(f"{k} {len(splits.get(k, []))}" for k in ("train", "dev", "test", "active", "excluded"))
               + f" → {out} (active: actively selected messages, training only; excluded: their near-duplicates "
               "of dev/test messages)")


def bench_cmd(
    model: Path = typer.Option(Path("models/default"), "--model", "-m", help="Model directory"),
    field: str = typer.Option(None, help="Head to benchmark (default: every head together)"),
    n: int = typer.Option(1000, help="Petitions per batched run"),
    single: int = typer.Option(300, help="Petitions for the one-at-a-time latency"),
    chars: int = typer.Option(500, help="Characters per petition"),
    sklearn: bool = typer.Option(True, help="Also run the same model in scikit-learn (retrains it from the manifest)"),
    fasttext: bool = typer.Option(False, help="Also a fastText supervised model on the same data, when installed"),
    chunk: int = typer.Option(None, help="Rows per onnxruntime call (default: the served default)"),
    against: list[Path] = typer.Option([], "--against", help="Instead: batched speed of --model vs these model "
                                                             "directories, measured alternately (ratios per round)"),
    repeats: int = typer.Option(3, help="--against: rounds"),
) -> None:
    """Speed of the classify stage: ONNX vs scikit-learn (and fastText), batched and one at a time."""
    _logging()
    from training.benchmark import compare_models, run_bench

    if against:
        extra_c = {"batch_size": chunk} if chunk else {}
        typer.echo(json.dumps(compare_models([model, *against], n=n, chars=chars, repeats=repeats, **extra_c),
                              ensure_ascii=False, indent=1))
        return

    extra = {"batch_size": chunk} if chunk else {}
    typer.echo(json.dumps(run_bench(model, field=field, n=n, single=single, chars=chars,
                                    with_sklearn=sklearn, with_fasttext=fasttext, **extra), ensure_ascii=False, indent=1))
