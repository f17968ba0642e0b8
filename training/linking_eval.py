"""`triage evaluate --history H.jsonl`: duplicate-link metrics through the real store (DESIGN.md).

H's records are registered as existing cases in a fresh temporary SQLite case store (CaseStore +
SqlCaseIndex: the product index, with entities from the served extractor and link features from
the linker's featurizer), then every evaluated record is linked against them independently — it
is never added. For each evaluated record with a `duplicate_of` key: predicted = its top link
above the linker's decision threshold, else none; TP predicted == gold id; FP a link that is not
the gold id (including any link for gold null); FN gold id not predicted.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triage.linking.features import DEFAULT_LINKER_DIR

logger = logging.getLogger(__name__)

GOLD_FIELDS = ("track", "department", "request_type", "flags", "district", "duplicate_of", "label", "co_departments",
               "hard_negative_of", "district_raw", "entities", "group", "split", "writer", "style")


def duplicate_metrics(gold: dict[str, str | None], predicted: dict[str, str | None]) -> dict[str, Any]:
    """DESIGN.md `duplicates`: precision = TP/(TP+FP), recall = TP/(TP+FN) over records with a duplicate_of key."""
    tp = fp = fn = 0
    for q, g in gold.items():
        p = predicted.get(q)
        if p is not None and p == g:
            tp += 1
        elif p is not None:
            fp += 1
        if g is not None and p != g:
            fn += 1
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "tp": tp, "fp": fp, "fn": fn,
            "n": len(gold), "with_gold_id": sum(1 for g in gold.values() if g is not None)}


def linker_dir_for(model_dir: Path | None) -> Path:
    """The linker artifacts of a model directory (MODEL/linker), else the default ones."""
    if model_dir is not None and (model_dir / "linker" / "verifier.json").exists():
        return model_dir / "linker"
    return DEFAULT_LINKER_DIR


@dataclass
class LinkEvaluation:
    metrics: dict[str, Any]
    links: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def evaluate_links(data: Path | Sequence[dict[str, Any]], history: Path, *, linker_dir: Path = DEFAULT_LINKER_DIR,
                   ner: bool = True, db_url: str | None = None, threshold: float | None = None) -> LinkEvaluation:
    """Register `history` in a fresh store, link every row of `rows` against it, score the links.

    Args:
        data: evaluated records, a JSONL file read as plain JSON (timestamps keep their zone) or rows
            (gold fields are removed before linking).
        db_url: an empty database to use instead of a temporary SQLite file (e.g. PostgreSQL).
        threshold: override the linker's decision threshold (experiments only; default from the manifest).
    """
    from triage.entities import EntityExtractor
    from triage.linking.linker import load_linker
    from triage.schemas import Petition
    from triage.store import CaseStore
    from triage.store.index import SqlCaseIndex
    from triage.store.ingest import ingest_file
    from triage.taxonomy import load_taxonomy

    if isinstance(data, Path):
        with data.open(encoding="utf-8") as fh:
            rows: Sequence[dict[str, Any]] = [json.loads(line) for line in fh if line.strip()]
    else:
        rows = data
    tagger = None
    if ner:
        from serving.ner import word_tagger

        tagger = word_tagger()  # the service's default word tagger (TRIAGE_NER_ENGINE)
    extractor = EntityExtractor(load_taxonomy().gazetteer, tagger)
    secret = secrets.token_hex(16).encode()
    with tempfile.TemporaryDirectory(prefix="triage-history-") as tmp:
        url = db_url or f"sqlite:///{Path(tmp) / 'history.db'}"
        store = CaseStore.from_url(url, pii_secret=secret, auto_upgrade=True)
        try:
            index = SqlCaseIndex(store)
            linker = load_linker(index, model_dir=linker_dir, secret=secret)
            if threshold is not None:
                linker.threshold = threshold
            t0 = time.perf_counter()
            report = ingest_file(history, store, extractor=extractor, featurizer=linker.featurizer)
            if not report.ok:
                raise ValueError(f"--history {history.name}: {report.summary()} "
                                 "(fix the file; `triage ingest` lists the bad lines)")
            logger.info("history: %d cases registered in %.1f s", report.inserted + report.unchanged, time.perf_counter() - t0)
            gold: dict[str, str | None] = {}
            predicted: dict[str, str | None] = {}
            links: dict[str, list[dict[str, Any]]] = {}
            latencies = []
            for row in rows:
                rid = str(row["id"])
                petition = Petition.model_validate({k: v for k, v in row.items() if k not in GOLD_FIELDS})
                entities = extractor.extract(petition.text, petition)
                t = time.perf_counter()
                found = linker.link(petition, petition.text, entities)
                latencies.append((time.perf_counter() - t) * 1000)
                links[rid] = [{"case_id": lk.case_id, "probability": lk.probability, "reasons": lk.reasons,
                               "status": lk.status, "same_petitioner": lk.same_petitioner} for lk in found]
                if "duplicate_of" in row:
                    gold[rid] = str(row["duplicate_of"]) if row["duplicate_of"] is not None else None
                    predicted[rid] = found[0].case_id if found else None
        finally:
            store.engine.dispose()
    metrics = duplicate_metrics(gold, predicted)
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    metrics["history_cases"] = report.inserted + report.unchanged
    metrics["threshold"] = round(linker.threshold, 4)
    metrics["linker"] = linker.version
    metrics["link_latency_ms"] = {"p50": round(float(np.percentile(lat, 50)), 3), "p99": round(float(np.percentile(lat, 99)), 3)}
    return LinkEvaluation(metrics=metrics, links=links)
