"""Batch re-classification speed and memory: local vs Ray (local mode), with and without entity extraction.

    .venv/bin/python bench/reclassify.py [--records 100000] [--extract-records 5000] [--modes local1,local2,ray2,extract2,flat]

Input: the written corpus (data/corpus/written/*.jsonl) plus, when materialised, the real-message
corpus (data/datasets/real/*.jsonl), repeated with varied ids (BENCH-0000001 …) up to --records.
The texts repeat; the ids do not. Every record carries the entities of its text, extracted once
per distinct text with the shipped extractor (patterns + gazetteer + LAC) and stamped with the
extractor version — the situation of cases in the store, whose entities are reused. The
"extract" mode forces extraction (--reextract) on the first --extract-records records.

Each mode runs the real CLI (`triage reclassify … --restart`) in a subprocess; this script samples
the resident memory of the whole process tree (CLI, pool workers, Ray processes) every 0.2 s.
Rates: `triage` = cases / triage-phase seconds (run.json); `end-to-end` includes staging the
input and writing the report. CPU ms/case = user+sys seconds of the CLI and its pool workers over
all phases (less sensitive than wall time to other load on a shared machine; Ray's worker
processes are not children of the CLI, so not counted). The machine is shared: compare modes
within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "bench" / "reclassify"


def corpus_records() -> list[dict]:
    files = sorted((ROOT / "data" / "corpus" / "written").glob("*.jsonl")) + sorted(
        (ROOT / "data" / "datasets" / "real").glob("*.jsonl"))
    out = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def entities_by_text(records: list[dict]) -> tuple[dict[str, dict], str]:
    """Entities of every distinct text (cached under var/), with the extractor version."""
    from serving.ner import LacTagger
    from triage.entities import EntityExtractor
    from triage.schemas import Petition
    from triage.taxonomy import load_taxonomy

    extractor = EntityExtractor(load_taxonomy().gazetteer, LacTagger())
    cache = WORK / f"entities-{extractor.version}.jsonl"
    known: dict[str, dict] = {}
    if cache.exists():
        for line in cache.read_text(encoding="utf-8").splitlines():
            k, v = json.loads(line)
            known[k] = v
    t0, n_new = time.perf_counter(), 0
    with cache.open("a", encoding="utf-8") as fh:
        for r in records:
            key = hashlib.sha256(r["text"].encode()).hexdigest()
            if key in known:
                continue
            p = Petition.model_validate(r)
            known[key] = extractor.extract(p.text, p).model_dump(mode="json")
            fh.write(json.dumps([key, known[key]], ensure_ascii=False) + "\n")
            n_new += 1
    if n_new:
        print(f"extracted entities of {n_new} distinct texts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return known, extractor.version


def build_input(n: int) -> Path:
    from training.jobs.reclassify import _extractor_version

    # Named after the extractor version: entities of another extractor would not be reused.
    path = WORK / f"input-{n}-{_extractor_version(True)}.jsonl"
    if path.exists():
        return path
    base = corpus_records()
    ents, version = entities_by_text(base)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = dict(base[i % len(base)])
            r["id"] = f"BENCH-{i:07d}"
            r["entities"] = ents[hashlib.sha256(r["text"].encode()).hexdigest()]
            r["extractor_version"] = version
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)
    print(f"built {path} ({n} records from {len(base)} corpus texts)", file=sys.stderr)
    return path


def _tree_rss_mb(root_pid: int) -> float:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(d), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2**20


def run_mode(name: str, data: Path, args: list[str]) -> dict:
    out = WORK / f"out-{name}"
    cmd = [str(ROOT / ".venv" / "bin" / "triage"), "reclassify", "--data", str(data), "--out", str(out), "--restart",
           "--no-progress", *args]
    peak = 0.0
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_mb(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # CLI + pool workers (waited-for children)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {stderr[-3000:]}")
    run = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return {"mode": name, "args": " ".join(args), "processed": summary["processed"], "triage_rate": run["rate_per_s"],
            "triage_s": run["triage_s"], "elapsed_s": run["elapsed_s"], "wall_s": round(wall, 1),
            "end_to_end_rate": round(summary["processed"] / wall, 1), "peak_tree_rss_mb": round(peak),
            "reused": summary["entities_reused"], "cpu_s": round(cpu, 1),
            "cpu_ms_per_case": round(1000 * cpu / max(1, summary["processed"]), 2)}


def stage_cpu(path: Path, n: int) -> dict:
    """CPU ms per case of each stage, one process, entities reused (process_time: robust to other load)."""
    from training.jobs.reclassify import DEFAULT_MODEL, DEFAULT_RULES, _extractor_version
    from training.jobs.sources import stage_record
    from training.jobs.triager import BatchTriager, TriagerConfig, staged_petition
    from triage.pipeline import DecisionContext

    lines = path.read_text(encoding="utf-8").splitlines()[:n]
    c0 = time.process_time()
    rows = [stage_record(json.loads(line), seq=i, source="bench", line=i + 1) for i, line in enumerate(lines)]
    c_stage = time.process_time() - c0
    tr = BatchTriager(TriagerConfig(model_dir=str(DEFAULT_MODEL), rules_path=str(DEFAULT_RULES), ner=True,
                                    as_of="2026-11-26T09:00:00+08:00", extractor_version=_extractor_version(True)))
    tr.triage_rows(rows[:64])  # warm-up
    cpu = {"stage (parse + validate)": c_stage, "petition + entities": 0.0, "classify": 0.0, "decide": 0.0}
    for i in range(0, len(rows), 64):
        batch = rows[i:i + 64]
        c0 = time.process_time()
        prepared = [(staged_petition(r["petition"]), tr._entities(r, "", None)[0]) for r in batch]  # type: ignore[arg-type]
        c1 = time.process_time()
        sugg = tr._suggestions([p.text for p, _ in prepared])
        c2 = time.process_time()
        for (p, e), sg in zip(prepared, sugg, strict=True):
            tr.decider.decide(DecisionContext(p, p.text, e, sg, [], tr.taxonomy, {}))
        c3 = time.process_time()
        cpu["petition + entities"] += c1 - c0
        cpu["classify"] += c2 - c1
        cpu["decide"] += c3 - c2
    out = {k: round(1000 * v / len(rows), 3) for k, v in cpu.items()}
    out["total"] = round(sum(out.values()), 3)
    out["implied 2-core rate /s"] = round(2000 / out["total"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--extract-records", type=int, default=5_000)
    ap.add_argument("--modes", default="local1,local2,ray2,extract2,flat")
    ap.add_argument("--checkpoint-every", type=int, default=10_000)
    ap.add_argument("--stages", type=int, default=0, help="only measure CPU ms per stage on this many records")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.stages:
        print(json.dumps(stage_cpu(build_input(args.extract_records), args.stages), indent=2))
        return
    data = build_input(args.records)
    small = build_input(args.extract_records)
    ck = ["--checkpoint-every", str(args.checkpoint_every)]
    plan = {
        "local1": ("local1", data, ["--workers", "1", *ck]),
        "local2": ("local2", data, ["--workers", "2", *ck]),
        "ray2": ("ray2", data, ["--engine", "ray", "--workers", "2", *ck]),
        "extract2": ("extract2", small, ["--workers", "2", "--reextract", *ck]),
        "flat": ("local2-10k", build_input(10_000), ["--workers", "2", *ck]),
    }
    results = []
    for mode in args.modes.split(","):
        name, path, extra = plan[mode]
        print(f"running {name} …", file=sys.stderr)
        results.append(run_mode(name, path, extra))
        print(json.dumps(results[-1]), file=sys.stderr)
    (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| mode | options | cases | triage /s | end-to-end /s | wall s | CPU ms/case (all phases) | peak RSS (tree) MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        cpu = f"{r['cpu_ms_per_case']}" if not r["mode"].startswith("ray") else "n/a (Ray workers are not children)"
        print(f"| {r['mode']} | `{r['args']}` | {r['processed']:,} | {r['triage_rate']:,.0f} | {r['end_to_end_rate']:,.0f} | "
              f"{r['wall_s']} | {cpu} | {r['peak_tree_rss_mb']:,} |")


if __name__ == "__main__":
    main()
