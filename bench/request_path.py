"""In-process stage breakdown of POST /api/v1/petitions/triage (persisted, linked, decided).

The real app (`serving.app.create_app`, lifespan included) behind Starlette's TestClient, one request
at a time, no network and no client process: where the time of one request goes. Each part is timed
by wrapping the component the route calls (the wrappers only read the clock):

* auth — the key verifier; pipeline stages — `stages_ms` of the response (extract, classify, link, decide);
* link parts — petitioner / band / vector candidates, snapshots, verifier scoring;
* save — `CaseStore.save_triage` (features recomputed by the route, when it still does, are counted apart);
* rest — total minus the above (validation, response model, JSON, Starlette, thread hand-offs).

Wall times move with the machine's load; `process_cpu_ms_per_request` (all threads of this process, TestClient
included) and each part's `cpu_mean` (thread CPU time) move much less: compare trees with those, alternating runs.

The store is a SQLite file (or a PostgreSQL URL) that you fill first, e.g. with bench/store_scale.py's
generator (LOAD ONLY: template texts, random bands and vectors); requests are bench/load.py's 500-character
petitions, every fifth from a repeat petitioner.

    .venv/bin/python bench/request_path.py --db /tmp/base.db --copy --requests 200 [--profile out.html]
    py-spy record -r 500 -f raw -o stacks.txt -- .venv/bin/python bench/request_path.py --db /tmp/base.db --copy --no-ner

pyinstrument (--profile) samples the main thread only: the request runs in a worker thread, so its profile shows
the client waiting. py-spy (`pip install py-spy`; samples every thread) shows the request path.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


CPU: dict[str, list[float]] = defaultdict(list)  # thread CPU time of the wrapped parts (ms)


def _timed(sink: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            sink[name].append((time.perf_counter() - t) * 1000)
            CPU[name].append((time.thread_time() - c) * 1000)

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="SQLite file (or a SQLAlchemy URL) holding the stored cases")
    ap.add_argument("--copy", action="store_true", help="work on a temporary copy of the SQLite file")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=20260301)
    ap.add_argument("--no-ner", action="store_true")
    ap.add_argument("--idempotency", action="store_true", help="send an Idempotency-Key with every request")
    ap.add_argument("--profile", type=Path, help="write a pyinstrument HTML profile of the measured requests")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from load import petition_body  # bench/load.py

    import serving.routes.petitions as petitions_route
    from serving.app import create_app
    from serving.settings import ServiceSettings

    tmp = Path(tempfile.mkdtemp(prefix="triage-rp-"))
    if "://" in args.db:
        url = args.db
    else:
        path = Path(args.db)
        if args.copy:
            shutil.copy(path, tmp / "rp.db")
            path = tmp / "rp.db"
        url = f"sqlite:///{path}"
    settings = ServiceSettings(database_url=url, pii_key_file=tmp / "pii.key", ner=not args.no_ner, log_level="WARNING",
                               rate_limit_per_second=1e6, rate_limit_burst=1e6, db_auto_upgrade="never")
    app = create_app(settings)
    t: dict[str, list[float]] = defaultdict(list)
    with TestClient(app) as client:
        store = app.state.store
        _, key = store.create_api_key("request-path-bench", "clerk")
        linker = app.state.pipeline.linker
        app.state.key_verifier = _timed(t, "auth", app.state.key_verifier)
        store.save_triage = _timed(t, "save", store.save_triage)
        if hasattr(petitions_route, "_features"):
            petitions_route._features = _timed(t, "features_again", petitions_route._features)
        petitions_route.hidden_case_ids = _timed(t, "hidden", petitions_route.hidden_case_ids)
        for name in ("petitioner_cases", "band_candidates", "vector_candidates", "snapshots"):
            setattr(linker.index, name, _timed(t, f"link.{name}", getattr(linker.index, name)))
        linker.score = _timed(t, "link.score", linker.score)
        rng = random.Random(args.seed)
        bodies = [petition_body(rng, i, 500) for i in range(args.warmup + args.requests)]
        headers = {"X-API-Key": key}

        def post(i: int, body: dict[str, Any]) -> dict[str, Any]:
            h = dict(headers, **({"Idempotency-Key": f"rp-{args.seed}-{i}"} if args.idempotency else {}))
            r = client.post("/api/v1/petitions/triage", json=body, headers=h)
            if r.status_code not in (200, 201):
                raise SystemExit(f"HTTP {r.status_code}: {r.text[:500]}")
            return r.json()  # type: ignore[no-any-return]

        for i, b in enumerate(bodies[:args.warmup]):
            post(i, b)
        t.clear()
        CPU.clear()
        cpu0 = time.process_time()
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        totals: list[float] = []
        links = 0
        load0 = os.getloadavg()
        for i, b in enumerate(bodies[args.warmup:], start=args.warmup):
            t0 = time.perf_counter()
            out = post(i, b)
            totals.append((time.perf_counter() - t0) * 1000)
            links += len(out["links"])
            for k, v in out["stages_ms"].items():
                t[f"stage.{k}"].append(v)
        load1 = os.getloadavg()
        cpu_total = time.process_time() - cpu0
        if profiler is not None:
            profiler.stop()
            args.profile.write_text(profiler.output_html())
            print(profiler.output_text(unicode=True, color=False, show_all=False), file=sys.stderr)
        stored = store.count_cases()
    parts = {k: {"p50": round(float(np.percentile(v, 50)), 2), "mean": round(statistics.fmean(v), 2),
                 "p99": round(float(np.percentile(v, 99)), 2), "n": len(v),
                 **({"cpu_mean": round(statistics.fmean(CPU[k]), 2)} if CPU.get(k) else {})} for k, v in sorted(t.items())}
    accounted = sum(statistics.fmean(t[k]) for k in ("auth", "save", "features_again", "hidden") if t.get(k))
    accounted += sum(statistics.fmean(v) for k, v in t.items() if k.startswith("stage."))
    print(json.dumps({
        "requests": len(totals), "stored_cases": stored, "links_returned": links, "idempotency": args.idempotency,
        "total_ms": {"p50": round(float(np.percentile(totals, 50)), 2), "mean": round(statistics.fmean(totals), 2),
                     "p99": round(float(np.percentile(totals, 99)), 2)},
        "rest_mean_ms": round(statistics.fmean(totals) - accounted, 2),
        # CPU time of the whole process (every thread: client, event loop, request threads) per request: the figure
        # that matters on a CPU-bound box and the one that moves least with other processes' load.
        "process_cpu_ms_per_request": round(cpu_total * 1000 / len(totals), 2), "parts": parts,
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in load1],
    }, ensure_ascii=False, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
