"""`triage train`: fit one calibrated linear head per label field, export ONNX, write the manifest.

    train(TrainRequest(...)) -> ModelManifest

Heads are trained on the rows of the --data files that carry the field (a file without the
field contributes nothing to that head). --dev files are used only for reporting (dev metrics,
calibration error) and for the ONNX parity check; nothing is fitted on them.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from training.baseline import LinearTextHead, expected_calibration_error
from training.config import BASE_CONFIG, TrainConfig, load_config
from training.datasets import ROOT, LoadedFile, append_second_choices, display_path, labelled, load_jsonl, row_input
from training.export import check_parity_multi, heads_to_onnx
from training.metrics import head_metrics
from triage.manifest import MODEL_CARD_FILE, DataFile, HeadSpec, InputSpec, ModelManifest, sha256_file
from triage.taxonomy import load_taxonomy
from triage.text import segmenter_id

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"  # one graph: shared vectorisers, one "probabilities_<field>" output per head


@dataclass
class TrainRequest:
    data: list[Path]
    fields: list[str]
    out_dir: Path
    dev: list[Path] = field(default_factory=list)
    config_path: Path = BASE_CONFIG
    overrides: list[str] = field(default_factory=list)
    name: str | None = None


def git_commit() -> str | None:
    """`git describe --always --dirty` of the repository (read-only), or None outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def replace_model_dir(tmp: Path, out_dir: Path) -> None:
    """Swap the freshly written `tmp` in as `out_dir`.

    Subdirectories of an existing `out_dir` that the new model does not contain (e.g. `linker/`,
    which the duplicate linker keeps beside the classifier) are moved into the new directory first,
    so retraining the classifier never deletes another component's artifacts.
    """
    if out_dir.exists():
        for child in out_dir.iterdir():
            if child.is_dir() and not (tmp / child.name).exists():
                child.rename(tmp / child.name)
                logger.info("kept %s from the previous %s", child.name, out_dir)
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def checked_labels(rows: list[dict[str, Any]], fld: str, taxonomy: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows labelled for `fld` and their labels, all known to the taxonomy when the field is a taxonomy kind.

    Raises:
        ValueError: no row has the field, or a label is not in the taxonomy.
    """
    rows, labels = labelled(rows, fld)
    if not rows:
        raise ValueError(f"no row of the --data files has a {fld!r} label")
    unknown = unknown_labels(labels, fld, taxonomy)
    if unknown:
        raise ValueError(f"{fld}: labels not in taxonomy {taxonomy.version}: {', '.join(unknown)}")
    return rows, labels


def unknown_labels(labels: list[str], fld: str, taxonomy: Any) -> list[str]:
    """The labels that are not codes of the field's taxonomy kind (none for a custom field such as `label`)."""
    kind = taxonomy.field_kinds.get(fld)
    return sorted(set(labels) - set(taxonomy.codes(kind))) if kind else []


def check_second_choices(aux: list[dict[str, Any]], fld: str, taxonomy: Any) -> None:
    """Refuse second-choice rows (`append_second_choices`) whose label is not in the taxonomy.

    Raises:
        ValueError: a second choice is not a code of the field's taxonomy kind (naming up to five row ids).
    """
    unknown = unknown_labels([a[fld] for a in aux], fld, taxonomy)
    if unknown:
        ids = [str(a.get("id")) for a in aux if a[fld] in unknown][:5]
        raise ValueError(f"{fld}: second_choice labels not in taxonomy {taxonomy.version}: {', '.join(unknown)} "
                         f"(rows {', '.join(ids)})")


def _inputs(rows: list[dict[str, Any]], title_repeat: int = 0) -> list[str]:
    """Model strings of the rows (text, and the title ×`title_repeat` where a row has one): as served."""
    return [row_input(r, title_repeat) for r in rows]


VECTORIZER_SETTINGS = ("analyzer", "ngram_min", "ngram_max", "min_df", "max_features", "binary")


def shared_vectorizers(config: TrainConfig, texts_by_field: dict[str, list[str]]) -> dict[str, dict[int, Any]]:
    """Field → {member index → fitted vectoriser} where members of several heads have the same settings.

    Each such vectoriser is fitted once on the union of those heads' training texts, so the exported
    graph computes it once for all of them (the ONNX TfIdfVectorizer op is most of the graph's time).
    """
    from training.baseline import close_vocabulary, make_vectorizer

    users: dict[tuple[Any, ...], list[tuple[str, int]]] = {}
    for fld in texts_by_field:
        for i, m in enumerate(config.members_for(fld)):
            users.setdefault(tuple(getattr(m, k) for k in VECTORIZER_SETTINGS), []).append((fld, i))
    out: dict[str, dict[int, Any]] = {fld: {} for fld in texts_by_field}
    for key, members in users.items():
        if len({fld for fld, _ in members}) < 2:
            continue
        texts = list(dict.fromkeys(t for fld in dict.fromkeys(f for f, _ in members) for t in texts_by_field[fld]))
        fld0, i0 = members[0]
        vec = make_vectorizer(config.members_for(fld0)[i0]).fit(texts)
        dropped = close_vocabulary(vec)
        logger.info("shared vectoriser %s for %s: %d texts, %d features (%d dropped to close the vocabulary)",
                    dict(zip(VECTORIZER_SETTINGS, key, strict=True)), ",".join(f"{f}[{i}]" for f, i in members),
                    len(texts), len(vec.vocabulary_), dropped)
        for fld, i in members:
            out[fld][i] = vec
    return out


def _dev_report(head: LinearTextHead, fld: str, texts: list[str], gold: list[str], bins: int) -> dict[str, Any]:
    logits = head.decision_function(texts)
    proba = softmax(logits, axis=1)
    labels = [str(c) for c in head.classes_]
    rep = head_metrics(fld, gold, proba, labels, bins)
    raw = softmax((logits - head.bias_) * head.temperature_, axis=1)
    index = {label: i for i, label in enumerate(labels)}
    y_idx = np.array([index.get(g, -1) for g in gold])
    known = y_idx >= 0
    rep["ece_uncalibrated"] = round(expected_calibration_error(raw[known], y_idx[known], bins), 4) if known.any() else None
    return rep


LINEAR_MODEL_TEXT = (
    "**Model.** Per head, TF-IDF members (word n-grams over `segment()` words, character n-grams) with linear "
    "classifiers and balanced class weights, summed into one linear model; temperature (+ class bias) "
    "calibration fitted on out-of-fold training scores; rows of files matched by `data_weights` weighted; exported as "
    "one ONNX graph (`model.onnx`: vectorisers shared between heads, one MatMul per vectoriser for all heads, "
    "softmax output per head)."
)


def write_model_card(out_dir: Path, manifest_fields: dict[str, Any], model_text: str = LINEAR_MODEL_TEXT) -> Path:
    """A short human-readable card: what the model is for, its data, heads and dev metrics."""
    m = manifest_fields
    repeat = (m.get("input") or {}).get("title_repeat", 0)
    used = (f"Input is the normalised text, preceded by the petition's title ×{repeat} when it has one; "
            "petitioner fields and gold labels are never used." if repeat else
            "Input is the normalised text; title, petitioner fields and gold labels are never used.")
    lines = [
        f"# Model card: {m['name']} ({m['version']})",
        "",
        f"Created {m['created_at']} from commit `{m['git_commit']}`; taxonomy_version {m['taxonomy_version']}; "
        f"segmentation `{m['segmenter']}`.",
        "",
        "**What it does.** Suggests labels for a petition text (one calibrated probability per label and head). "
        "Suggestions only: the rule engine decides and an officer reviews. " + used,
        "",
        model_text,
        "",
        "| head | labels | train rows | dev n | dev macro-F1 | dev accuracy | dev top-3 | dev ECE (uncal. → cal.) | parity |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fld, head in m["heads"].items():
        d = m["metrics"].get(fld, {}).get("dev") or {}
        ece = f"{d.get('ece_uncalibrated')} → {d.get('ece')}" if d else "–"
        lines.append(
            f"| {fld} | {len(head['labels'])} | {head['train_rows']} | {d.get('n', '–')} | {d.get('macro_f1', '–')} | "
            f"{d.get('accuracy', '–')} | {d.get('top3', '–')} | {ece} | {head['parity_max_abs_diff'] or 0:.1e} |"
        )
    lines += ["", "**Training data** (sha256 in manifest.json):", ""]
    lines += [f"- `{f['path']}`: {f['rows']} rows" for f in m["data_files"]]
    lines += [
        "",
        "**Limits.** Trained on a small hand-written + hand-labelled corpus and on public messages from another "
        "province; rare labels have few examples and low recall; test-split figures are in the README / "
        "`triage evaluate` reports, not here (dev only). Texts from a new channel or region should be "
        "re-evaluated before relying on the scores. No personal data is stored in the model beyond n-gram "
        "vocabularies built from the training texts (fake identifiers in the written corpus).",
        "",
    ]
    path = out_dir / MODEL_CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def train(req: TrainRequest, config: TrainConfig | None = None) -> ModelManifest:
    """Train every requested head, export one ONNX graph with a per-head parity check, write manifest and card.

    The directory is written into a temporary sibling and renamed into place at the end, so an
    interrupted run never leaves a half-written model directory.

    Raises:
        ValueError: a field has no labelled rows, or fewer than two classes.
        ArtifactMismatchError: the ONNX graph does not reproduce the scikit-learn probabilities.
    """
    t0 = time.perf_counter()
    config = config or load_config(req.config_path, req.overrides)
    title_repeat = config.input.title_repeat
    taxonomy = load_taxonomy()
    files: list[LoadedFile] = [load_jsonl(p) for p in req.data]
    dev_files: list[LoadedFile] = [load_jsonl(p) for p in req.dev]
    train_rows = [r for f in files for r in f.rows]
    row_file = {id(r): display_path(f.path) for f in files for r in f.rows}
    dev_rows = [r for f in dev_files for r in f.rows]
    out_dir = req.out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    heads: dict[str, HeadSpec] = {}
    metrics: dict[str, Any] = {}
    fitted: dict[str, LinearTextHead] = {}
    parity_texts: dict[str, list[str]] = {}
    try:
        inputs: dict[str, tuple[list[str], list[str]]] = {}
        weights: dict[str, list[float]] = {}
        targets: dict[str, list[bool] | None] = {}
        cal_weights: dict[str, list[float] | None] = {}
        origins: dict[str, list[int] | None] = {}
        for fld in req.fields:
            pool = [r for r in train_rows if not config.excludes(fld, row_file[id(r)])]
            rows, labels = checked_labels(pool, fld, taxonomy)
            shown = [row_file[id(r)] for r in rows]
            weights[fld] = [config.weight_of(p, fld) for p in shown]
            targets[fld] = [config.is_target(fld, p) for p in shown] if config.adapts(fld) else None
            cal_weights[fld] = config.calibration.domain_weights(shown)
            origins[fld] = None
            fraction = config.second_choice_for(fld)
            if fraction > 0:  # soft labels: each second choice as an auxiliary row after the ordinary ones
                n = len(rows)
                rows, weights[fld], targets[fld], cal_weights[fld], origins[fld] = append_second_choices(
                    rows, fld, fraction, weights[fld], targets[fld], cal_weights[fld])
                check_second_choices(rows[n:], fld, taxonomy)
                labels = labels + [r[fld] for r in rows[n:]]
            inputs[fld] = (_inputs(rows, title_repeat), labels)
            if targets[fld] is not None and not any(targets[fld]):
                raise ValueError(f"head {fld}: no --data file matches heads.{fld}.target_data")
        shared = (shared_vectorizers(config, {f: x for f, (x, _) in inputs.items()}) if config.shared_vocabulary
                  else {f: {} for f in req.fields})
        for fld in req.fields:
            texts, labels = inputs[fld]
            logger.info("head %s: %d training rows, %d classes", fld, len(texts), len(set(labels)))
            sample_weight = weights[fld] if any(w != 1.0 for w in weights[fld]) else None
            head = LinearTextHead(config.members_for(fld), config, shared[fld]).fit(
                texts, labels, sample_weight, targets[fld], cal_weights[fld], origins[fld])
            drows, dgold = labelled(dev_rows, fld)
            dtexts = _inputs(drows, title_repeat)
            n_aux = sum(o >= 0 for o in origins[fld] or [])
            report: dict[str, Any] = {"train_rows": len(texts) - n_aux, "features": head.n_features_}
            if n_aux:
                report["second_choice_rows"] = n_aux
            if drows:
                report["dev"] = _dev_report(head, fld, dtexts, dgold, config.calibration.ece_bins)
                logger.info("head %s dev: macro_f1=%.4f accuracy=%.4f ece %.4f -> %.4f", fld,
                            report["dev"]["macro_f1"], report["dev"]["accuracy"],
                            report["dev"]["ece_uncalibrated"] or 0.0, report["dev"]["ece"] or 0.0)
            fitted[fld] = head
            parity_texts[fld] = (dtexts or texts)[: config.parity_rows]
            metrics[fld] = report
        model, outputs = heads_to_onnx(fitted)
        (tmp / MODEL_FILE).write_bytes(model)
        pipelines = {fld: head.to_pipeline() for fld, head in fitted.items()}
        diffs = check_parity_multi(pipelines, model, outputs, parity_texts, config.parity_tolerance)
        for fld, head in fitted.items():
            has_dev = bool(metrics[fld].get("dev"))
            metrics[fld]["parity"] = {"rows": len(parity_texts[fld]), "split": "dev" if has_dev else "train",
                                      "max_abs_diff": diffs[fld]}
            heads[fld] = HeadSpec(
                field=fld, labels=[str(c) for c in head.classes_], artifact=MODEL_FILE, output_name=outputs[fld],
                train_rows=metrics[fld]["train_rows"],
                calibration={"method": config.calibration.method, "temperature": round(head.temperature_, 6),
                             "bias": [round(float(b), 6) for b in head.bias_], "fitted_on": "out-of-fold train scores",
                             "ece_dev_uncalibrated": metrics[fld].get("dev", {}).get("ece_uncalibrated"),
                             "ece_dev": metrics[fld].get("dev", {}).get("ece")},
                parity_max_abs_diff=diffs[fld],
            )
        metrics["artifact_bytes"] = len(model)
        created = datetime.now(UTC).replace(microsecond=0)
        onnx_hashes = {MODEL_FILE: sha256_file(tmp / MODEL_FILE)}
        version = created.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha256(
            "".join(sorted(onnx_hashes.values())).encode()).hexdigest()[:8]
        fields_common: dict[str, Any] = {
            "name": req.name or out_dir.name, "version": version, "created_at": created.isoformat(),
            "taxonomy_version": taxonomy.version, "segmenter": segmenter_id(),
            "input": InputSpec(title_repeat=title_repeat).model_dump(),
            "heads": {k: v.model_dump() for k, v in heads.items()},
            "data_files": [DataFile(path=display_path(f.path), sha256=f.sha256, rows=len(f.rows)).model_dump()
                           for f in files],
            "metrics": metrics, "git_commit": git_commit(),
        }
        card = write_model_card(tmp, fields_common)
        artifacts = dict(onnx_hashes)
        artifacts[card.name] = sha256_file(card)
        manifest = ModelManifest.model_validate({
            **fields_common,
            "artifacts": artifacts,
            "train_config": {
                **config.model_dump(mode="json"),
                "fields": req.fields,
                "dev_files": [DataFile(path=display_path(f.path), sha256=f.sha256, rows=len(f.rows)).model_dump()
                              for f in dev_files],
                "config_file": display_path(req.config_path),
                "overrides": req.overrides,
            },
        })
        manifest.write(tmp)
        replace_model_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("model %s %s written to %s in %.1fs", manifest.name, manifest.version, out_dir, time.perf_counter() - t0)
    return manifest
