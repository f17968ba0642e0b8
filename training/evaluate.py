"""`triage evaluate`: metrics of a model directory on a labelled JSONL file (DESIGN.md contract).

The evaluated path is the served one (serving.sessions.OnnxClassifier: normalize → segment →
ONNX), one record at a time, so `latency_ms` is what a single petition costs. Gold fields are
removed from each record before it is predicted; only `text` and the optional `title` (not a gold field; used
when the model's manifest says `input.title_repeat` > 0) reach the model.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets import load_jsonl
from training.metrics import head_metrics
from triage.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)

GOLD_FIELDS = ("track", "department", "request_type", "flags", "district", "duplicate_of", "label")


def _strip_gold(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in fields and k not in GOLD_FIELDS}


def evaluate(model_dir: Path, data: Path, *, predictions: Path | None = None, history: Path | None = None,
             plots_dir: Path | None = None, threads: int = 1, entity_baseline: bool = False) -> dict[str, Any]:
    """Predict every record of `data` with the model and score each gold field it has a head for.

    Returns the report of the DESIGN.md contract: n, model, one object per evaluated field
    (macro_f1, accuracy, per_class, top3 for department, ece), latency_ms p50/p99.

    With `history`, also `duplicates` (precision, recall, f1 of the linker's top links against
    `duplicate_of`; training/linking_eval.py) and `links` in every prediction line.

    Data with a `flags` gold (a list per record) also gets `flags` (per flag precision / recall / F1, micro and
    macro F1, exact set; `flag_metrics`) and `decision` (track / department accuracy and macro-F1 after the rules)
    from the whole served pipeline without links (`_decisions`); prediction lines then carry `decision`.

    Data with entity span gold or a `district` key also gets `entities` (per type precision/recall/F1,
    exact span and overlap) and `district` (accuracy) from the served extractor (patterns + gazetteer
    + LAC), with `entity_baseline` also `entities_baseline` (jieba.posseg); prediction lines then
    carry `entities` and `district`. training/entity_eval.py.
    """
    from serving.sessions import OnnxClassifier

    clf = OnnxClassifier(model_dir, load_taxonomy(), intra_op_threads=threads)
    rows = load_jsonl(data).rows
    heads = clf.manifest.heads
    fields = tuple(f for f in heads if any(isinstance(r.get(f), str) and r.get(f) for r in rows))
    logger.info("evaluating %s on %d records; fields %s", clf.version, len(rows), ",".join(fields) or "none")
    probs: dict[str, list[np.ndarray]] = {f: [] for f in heads}
    latencies: list[float] = []
    pred_lines: list[dict[str, Any]] = []
    for row in rows:
        inp = _strip_gold(row, fields)
        t0 = time.perf_counter()
        title = inp.get("title")
        p = clf.predict_proba([inp["text"]], [title if isinstance(title, str) else None])
        ms = (time.perf_counter() - t0) * 1000
        latencies.append(ms)
        line: dict[str, Any] = {"id": row["id"]}
        for f, head in heads.items():
            probs[f].append(p[f][0])
            scores = {lab: round(float(s), 6) for lab, s in zip(head.labels, p[f][0], strict=True)}
            line[f] = {"label": head.labels[int(np.argmax(p[f][0]))], "scores": scores}
        line["latency_ms"] = round(ms, 3)
        pred_lines.append(line)
    _warn_on_overlap(clf.manifest, rows, fields)
    report: dict[str, Any] = {"n": len(rows), "model": str(model_dir)}
    for f in fields:
        idx = [i for i, r in enumerate(rows) if isinstance(r.get(f), str) and r.get(f)]
        gold = [rows[i][f] for i in idx]
        proba = np.vstack([probs[f][i] for i in idx])
        report[f] = head_metrics(f, gold, proba, heads[f].labels)
        if plots_dir is not None:
            report[f]["plots"] = write_plots(plots_dir, f, gold, proba, heads[f].labels)
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    report["latency_ms"] = {"p50": round(float(np.percentile(lat, 50)), 3), "p99": round(float(np.percentile(lat, 99)), 3)}
    from training.entity_eval import has_entity_gold

    has_flags = any(isinstance(r.get("flags"), list) for r in rows)
    if has_flags and not set(heads) >= DECIDED_HEADS:
        logger.info("data has flags: the rules need a model with heads %s to decide them", ", ".join(sorted(DECIDED_HEADS)))
    raw = _raw_rows(data) if has_flags or has_entity_gold(rows) else []  # as written: see _entities
    extractor = _served_extractor(load_taxonomy(), threads) if raw else None
    if has_flags and set(heads) >= DECIDED_HEADS:
        decided, decision_preds = _decisions(raw, clf, extractor)
        report.update(decided)
        for line in pred_lines:
            line.update(decision_preds.get(str(line["id"]), {}))
    if has_entity_gold(rows):
        entity_metrics, entity_preds = _entities(raw, extractor, entity_baseline)
        report.update(entity_metrics)
        for line in pred_lines:
            line.update(entity_preds.get(str(line["id"]), {}))
    if history is not None:
        from training.linking_eval import evaluate_links, linker_dir_for

        linked = evaluate_links(data, history, linker_dir=linker_dir_for(model_dir))
        report["duplicates"] = linked.metrics
        for line in pred_lines:
            line["links"] = linked.links.get(line["id"], [])
    elif any("duplicate_of" in r for r in rows):
        logger.info("data has duplicate_of: give --history H.jsonl (the existing cases) to score duplicate links")
    if predictions is not None:
        predictions.parent.mkdir(parents=True, exist_ok=True)
        with predictions.open("w", encoding="utf-8") as fh:
            for line in pred_lines:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return report


def _raw_rows(data: Path) -> list[dict[str, Any]]:
    """The JSON lines as written, with `id` filled in as `load_jsonl` does (file stem:line number)."""
    rows = []
    with data.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if line.strip():
                rec = json.loads(line)
                rows.append({**rec, "id": str(rec.get("id") or f"{data.stem}:{i + 1}")})
    return rows


DECIDED_HEADS = {"track", "department", "request_type"}  # the suggestions the rules decide on

# Flags a labeller can set (TAXONOMY §4); deadline_risk is computed by the rules from dates and never labelled.
LABELLED_FLAGS = ("group", "risk", "repeat", "confidential", "pii_sensitive", "place_unknown")


def flag_metrics(gold: list[set[str]], pred: list[set[str]], flags: tuple[str, ...] = LABELLED_FLAGS) -> dict[str, Any]:
    """Per flag precision / recall / F1 / support over records, micro and macro F1, and the share of records whose
    set of labelled flags is exactly right. Flags outside `flags` (deadline_risk) are not scored."""
    from training.metrics import prf

    per: dict[str, dict[str, Any]] = {}
    totals = [0, 0, 0]
    for f in flags:
        counts = [sum(f in g and f in p for g, p in zip(gold, pred, strict=True)),
                  sum(f not in g and f in p for g, p in zip(gold, pred, strict=True)),
                  sum(f in g and f not in p for g, p in zip(gold, pred, strict=True))]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        per[f] = {**prf(*counts), "support": counts[0] + counts[2]}
    present = [f for f in flags if per[f]["support"]]
    exact = sum((g & set(flags)) == (p & set(flags)) for g, p in zip(gold, pred, strict=True))
    return {"micro_f1": prf(*totals)["f1"],
            "macro_f1": round(sum(per[f]["f1"] for f in present) / len(present), 4) if present else None,
            "exact_set": round(exact / len(gold), 4) if gold else None, "per_class": per}


def _decisions(raw: list[dict[str, Any]], clf: Any, extractor: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """`flags` (and `decision`: track / department after the rules) of the whole served pipeline — the served
    `extractor`, the evaluated classifier `clf`, the rules of data/policy/rules.toml — for the records (as written,
    `_raw_rows`) with a `flags` gold (a list per record).

    The flags are set by the rules and the extractor, not by a model head, so they are scored as the service would
    return them. No duplicate links are given (links need the existing cases): `repeat` comes from the text alone.
    Gold fields are stripped from every record before it is triaged.
    """
    from pydantic import ValidationError
    from sklearn.metrics import accuracy_score, f1_score

    from triage.pipeline import TriagePipeline
    from triage.rules import load_decider
    from triage.schemas import DuplicateLink, Petition

    class NoLinks:
        version = "evaluate-no-links"

        def link(self, petition: Petition, text: str, entities: object) -> list[DuplicateLink]:
            return []

    taxonomy = load_taxonomy()
    pipeline = TriagePipeline(taxonomy, extractor=extractor, classifier=clf,
                              linker=NoLinks(), decider=load_decider(taxonomy))
    gold_flags: list[set[str]] = []
    pred_flags: list[set[str]] = []
    gold_of: dict[str, list[str]] = {"track": [], "department": []}
    pred_of: dict[str, list[str]] = {"track": [], "department": []}
    status: dict[str, int] = {}
    preds: dict[str, Any] = {}
    invalid = 0
    for rec in raw:
        if not isinstance(rec.get("flags"), list):
            continue
        inp = {k: v for k, v in rec.items() if k not in GOLD_FIELDS and k not in ("id", "entities", "district_raw")}
        try:
            petition = Petition.model_validate(inp)
        except ValidationError as exc:  # not a valid petition for the service: counted, not decided
            invalid += 1
            logger.warning("record %s: not a valid petition (%s): no decision", rec["id"],
                           ".".join(str(x) for x in exc.errors()[0]["loc"]))
            continue
        d = pipeline.triage(petition).decision
        gold_flags.append({str(f) for f in rec["flags"]})
        pred_flags.append(set(d.flags))
        for f in gold_of:
            if isinstance(rec.get(f), str) and rec[f]:
                gold_of[f].append(rec[f])
                pred_of[f].append(getattr(d, f))
        status[d.status] = status.get(d.status, 0) + 1
        preds[rec["id"]] = {"decision": {"track": d.track, "department": d.department, "flags": sorted(d.flags),
                                         "status": d.status}}
    decision: dict[str, Any] = {"n": len(gold_flags), "invalid": invalid, "status": status}
    for f, gold in gold_of.items():
        if gold:  # macro-F1 over every label in the gold or the decisions, as head_metrics counts it
            pred = pred_of[f]
            decision[f] = {"macro_f1": round(float(f1_score(gold, pred, labels=sorted(set(gold) | set(pred)),
                                                            average="macro", zero_division=0)), 4),
                           "accuracy": round(float(accuracy_score(gold, pred)), 4)}
    return {"flags": flag_metrics(gold_flags, pred_flags), "decision": decision}, preds


def _entities(raw: list[dict[str, Any]], extractor: Any, baseline: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Entity/district metrics of the served extractor (gold stripped from every record before extraction).

    Takes the JSON lines as written (`_raw_rows`: the `datasets` rows turn submitted_at into naive UTC datetimes,
    which relative dates such as 去年3月 cannot use).
    """
    from training.entity_eval import entity_report

    return entity_report(raw, extractor, baseline=baseline)


def _served_extractor(taxonomy: Any, threads: int) -> Any:
    """The extractor the service runs: patterns + gazetteer + LAC + the responsibility list's bodies."""
    from serving.ner import word_tagger
    from triage.entities import EntityExtractor

    return EntityExtractor(taxonomy.gazetteer, word_tagger(intra_op_threads=threads),
                           departments=taxonomy.responsibilities.values())


def _warn_on_overlap(manifest: Any, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    """Log a warning when evaluated texts were training texts of the same head (when the files are at hand)."""
    from training.datasets import ROOT
    from triage.manifest import sha256_file
    from triage.text import normalize

    train: dict[str, set[str]] = {f: set() for f in fields}
    for df in manifest.data_files:
        path = ROOT / df.path if not Path(df.path).is_absolute() else Path(df.path)
        if not path.exists() or sha256_file(path) != df.sha256:
            logger.info("training file %s not at hand (or changed): overlap check skipped for it", df.path)
            continue
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    for f in fields:
                        if isinstance(r.get(f), str) and r.get(f):
                            train[f].add(normalize(r["text"]))
    for f in fields:
        seen = sum(1 for r in rows if isinstance(r.get(f), str) and r.get(f) and normalize(r["text"]) in train[f])
        if seen:
            logger.warning("%s: %d evaluated records have texts the %s head was trained on: not a held-out figure",
                           f, seen, f)


def write_plots(out_dir: Path, field: str, gold: list[str], proba: np.ndarray, labels: list[str],
                bins: int = 10) -> dict[str, str]:
    """Confusion-matrix and reliability-diagram PNGs for one field; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    out_dir.mkdir(parents=True, exist_ok=True)
    _cjk_font()
    pred = [labels[i] for i in proba.argmax(axis=1)]
    present = [lab for lab in labels if lab in set(gold) | set(pred)]
    present += sorted(set(gold) - set(labels))
    cm = confusion_matrix(gold, pred, labels=present)
    size = max(5.0, 0.45 * len(present) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(present)), present, rotation=90, fontsize=8)
    ax.set_yticks(range(len(present)), present, fontsize=8)
    for i in range(len(present)):
        for j in range(len(present)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"{field}: confusion matrix (n={len(gold)})")
    fig.tight_layout()
    cm_path = out_dir / f"{field}_confusion.png"
    fig.savefig(cm_path, dpi=110)
    plt.close(fig)

    conf = proba.max(axis=1)
    correct = np.array([p == g for p, g in zip(pred, gold, strict=True)])
    edges = np.linspace(0, 1, bins + 1)
    mids, accs, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append(conf[m].mean())
            accs.append(correct[m].mean())
            counts.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(mids, accs, "o-", label="model")
    for x, y, c in zip(mids, accs, counts, strict=True):
        ax.annotate(str(c), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("confidence (top label probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{field}: reliability diagram (n={len(gold)})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    rel_path = out_dir / f"{field}_reliability.png"
    fig.savefig(rel_path, dpi=110)
    plt.close(fig)
    return {"confusion": str(cm_path), "reliability": str(rel_path)}


def _cjk_font() -> None:
    """Use an installed CJK font when there is one, so Chinese labels are not drawn as boxes."""
    import matplotlib
    from matplotlib import font_manager

    for name in ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "AR PL UMing CN"):
        if any(f.name == name for f in font_manager.fontManager.ttflist):
            matplotlib.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            matplotlib.rcParams["axes.unicode_minus"] = False
            return
