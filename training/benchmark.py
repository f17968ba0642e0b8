"""Speed of the classify stage on this machine: ONNX (served path) vs the same model in scikit-learn.

`triage bench --model models/default [--field department]`: retrains one head of the model from
the data files and config recorded in its manifest (so the scikit-learn model and the graph are
the same model), then in the same process measures, for petitions of `chars` characters:
petitions/s batched and p50/p99 ms one at a time, each including normalize + segment. Optionally
a fastText supervised model on the same data (package `fasttext-numpy2-wheel`) for reference.
Single-threaded (onnxruntime intra-op threads = 1) so the figures are per core.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.baseline import LinearTextHead
from training.config import TrainConfig
from training.datasets import ROOT, labelled, load_jsonl, row_input
from training.export import onnx_session, pipeline_to_onnx
from triage.manifest import load_manifest
from triage.text import normalize, segmented_text

logger = logging.getLogger(__name__)


def make_petitions(texts: list[str], n: int, chars: int, seed: int = 0) -> list[str]:
    """n texts of exactly `chars` characters, built by concatenating shuffled source texts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buf = ""
        while len(buf) < chars:
            buf += texts[int(rng.integers(len(texts)))]
        out.append(buf[:chars])
    return out


def _timed_batch(fn: Callable[[list[str]], Any], texts: list[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):  # best of a few runs: the machine is shared with other work
        t0 = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def _timed_single(fn: Callable[[list[str]], Any], texts: list[str]) -> dict[str, float]:
    ms = []
    for t in texts:
        t0 = time.perf_counter()
        fn([t])
        ms.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def _measure(name: str, fn: Callable[[list[str]], Any], batch: list[str], single: list[str]) -> dict[str, Any]:
    fn(batch[:20])  # warm-up
    row = {"engine": name, "batched_per_s": round(_timed_batch(fn, batch), 1), **_timed_single(fn, single)}
    logger.info("bench %s: %s", name, row)
    return row


def _fasttext_row(texts: list[str], labels: list[str], batch: list[str], single: list[str]) -> dict[str, Any]:
    try:
        import fasttext
    except ImportError:
        return {"engine": "fasttext", "skipped": "fasttext-numpy2-wheel is not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        # fastText reads its file in order and never shuffles: rows grouped by label would end every epoch on the
        # last classes (topic_more.py measured 0.62 vs 0.80 macro-F1), so the lines are shuffled (seeded)
        lines = [f"__label__{y} {x}\n" for x, y in zip(texts, labels, strict=True)]
        random.Random(0).shuffle(lines)
        path.write_text("".join(lines), encoding="utf-8")
        model = fasttext.train_supervised(str(path), epoch=25, lr=0.5, wordNgrams=2, bucket=200_000, dim=50,
                                          minn=1, maxn=2, thread=1, verbose=0)

    def predict(xs: list[str]) -> Any:
        return model.predict([segmented_text(normalize(x)) for x in xs], k=-1)

    return _measure("fasttext (segment + predict)", predict, batch, single)


def run_bench(model_dir: Path, *, field: str | None = None, n: int = 1000, single: int = 300, chars: int = 500,
              with_sklearn: bool = True, with_fasttext: bool = False, batch_size: int = 64) -> dict[str, Any]:
    """Measure the served ONNX path and, for one head, the same model in scikit-learn."""
    from serving.sessions import OnnxClassifier
    from triage.taxonomy import load_taxonomy

    manifest = load_manifest(model_dir)
    field = field or next(iter(manifest.heads))
    clf = OnnxClassifier(model_dir, load_taxonomy(), intra_op_threads=1, batch_size=batch_size)
    corpus = [r["text"] for r in load_jsonl(ROOT / "data" / "corpus" / "written" / "test.jsonl").rows]
    batch = make_petitions(corpus, n, chars, seed=1)
    singles = make_petitions(corpus, single, chars, seed=2)
    report: dict[str, Any] = {"model": str(model_dir), "version": manifest.version, "chars": chars,
                              "batch_size": n, "onnx_chunk": batch_size, "single_runs": single, "threads": 1, "rows": []}
    rows = report["rows"]
    heads = ",".join(manifest.heads)
    if clf.input_kind == "token_ids":
        rows.append(_measure("normalize only", lambda xs: [normalize(x) for x in xs], batch, singles))
        normalized = {x: normalize(x) for x in batch + singles}
        rows.append(_measure(f"graph only, all heads ({heads}; WordPiece + onnxruntime on normalised text)",
                             lambda xs: clf._run([normalized[x] for x in xs]), batch, singles))
        rows.append(_measure(f"served path, all heads ({heads})", clf.predict_proba, batch, singles))
        return report  # no scikit-learn twin of a transformer model
    rows.append(_measure("segmentation only (normalize + segment)", lambda xs: [segmented_text(normalize(x)) for x in xs],
                         batch, singles))
    segmented = {x: segmented_text(normalize(x)) for x in batch + singles}

    def graph_only(xs: list[str]) -> Any:
        return clf._run(np.asarray([segmented[x] for x in xs], dtype=object).reshape(-1, 1))

    rows.append(_measure(f"graph only, all heads ({heads}; onnxruntime on segmented text)", graph_only, batch, singles))
    rows.append(_measure(f"served path, all heads ({heads}; normalize + segment + graph)", clf.predict_proba, batch, singles))
    if with_sklearn or with_fasttext:
        cfg_data = {k: v for k, v in manifest.train_config.items() if k in TrainConfig.model_fields}
        cfg = TrainConfig.model_validate(cfg_data)
        files = [ROOT / f.path if not Path(f.path).is_absolute() else Path(f.path) for f in manifest.data_files]
        train_rows, labels = labelled([r for p in files for r in load_jsonl(p).rows], field)
        texts = [row_input(r, cfg.input.title_repeat) for r in train_rows]  # as the served model was trained
        if with_sklearn:
            logger.info("retraining head %s (%d rows) for the scikit-learn comparison", field, len(texts))
            head = LinearTextHead(cfg.members_for(field), cfg).fit(texts, labels)
            pipe = head.to_pipeline()
            session = onnx_session(pipeline_to_onnx(pipe), threads=1)

            def run_onnx(xs: list[str]) -> Any:
                feeds = np.asarray([segmented_text(normalize(x)) for x in xs], dtype=object).reshape(-1, 1)
                step = clf.batch_size  # same chunking as the served path (dense TF-IDF inside the graph)
                return [session.run(["probabilities"], {"text": feeds[i:i + step]}) for i in range(0, len(feeds), step)]

            def run_sklearn(xs: list[str]) -> Any:
                return pipe.predict_proba([segmented_text(normalize(x)) for x in xs])

            onnx_row = _measure(f"onnx head {field}", run_onnx, batch, singles)
            skl_row = _measure(f"sklearn head {field}", run_sklearn, batch, singles)
            rows += [onnx_row, skl_row]
            report["ratios_onnx_vs_sklearn"] = {
                "batched_throughput": round(onnx_row["batched_per_s"] / skl_row["batched_per_s"], 2),
                "single_p50_speedup": round(skl_row["p50_ms"] / onnx_row["p50_ms"], 2),
                "single_p99_speedup": round(skl_row["p99_ms"] / onnx_row["p99_ms"], 2),
            }
        if with_fasttext:
            rows.append(_fasttext_row(texts, labels, batch, singles))
    return report


def compare_models(models: list[Path], *, n: int = 1000, chars: int = 500, repeats: int = 3,
                   batch_size: int = 64) -> dict[str, Any]:
    """Batched petitions/s of several model directories, measured alternately in one process.

    Each round measures every model once (graph only on pre-tokenised input, then the served path
    with normalize + tokenisation); the machine is shared, so the figures are reported per round,
    as ratios to the first model within the same round, and also per second of this process's CPU
    time (one intra-op thread: the cost on one core, less sensitive to other work on the machine).
    """
    from serving.sessions import OnnxClassifier
    from triage.taxonomy import load_taxonomy

    corpus = [r["text"] for r in load_jsonl(ROOT / "data" / "corpus" / "written" / "test.jsonl").rows]
    batch = make_petitions(corpus, n, chars, seed=1)
    clfs = [OnnxClassifier(m, load_taxonomy(), intra_op_threads=1, batch_size=batch_size) for m in models]
    prepared = [clf.preprocess(batch) for clf in clfs]
    for clf, feeds in zip(clfs, prepared, strict=True):
        clf._run(feeds[:32])  # warm-up
    rounds = []
    for _ in range(repeats):
        row = []
        for clf, feeds in zip(clfs, prepared, strict=True):
            t0, c0 = time.perf_counter(), time.process_time()
            clf._run(feeds)
            graph, graph_cpu = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            clf.predict_proba(batch)
            served, served_cpu = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
            row.append({"model": str(clf.model_dir), "graph_per_s": round(graph, 1), "served_per_s": round(served, 1),
                        "graph_per_cpu_s": round(graph_cpu, 1), "served_per_cpu_s": round(served_cpu, 1)})
        for r in row:
            for k in ("graph", "served"):
                r[f"{k}_ratio"] = round(r[f"{k}_per_s"] / row[0][f"{k}_per_s"], 2)
        logger.info("round: %s", row)
        rounds.append(row)
    return {"chars": chars, "petitions": n, "onnx_chunk": batch_size, "threads": 1,
            "models": [{"dir": str(c.model_dir), "version": c.manifest.version} for c in clfs], "rounds": rounds}


if __name__ == "__main__":  # pragma: no cover
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    print(json.dumps(run_bench(Path(sys.argv[1] if len(sys.argv) > 1 else "models/default")), indent=1))
