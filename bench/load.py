"""Load benchmark of POST /api/v1/petitions/triage over loopback: p50/p99 latency and throughput.

End to end and persisted: every request goes through the real server process (`triage serve`,
N uvicorn workers) — auth, validation, NER + patterns + gazetteer, ONNX classifier, linker over the
SQL case index (petitioner keys, MinHash bands, vectors), rule decider, and one store transaction
(case, suggestions, decision, links, review task, hash-chained audit event).

The store is first filled with synthetic cases by bench/store_scale.py's generator (LOAD ONLY:
template texts, random band hashes and vectors; it measures cost, not linking quality). Requests
are 500-character petitions built from varied templates, each with its own text; every fifth one
repeats an earlier petitioner's phone so the same-petitioner path is exercised.

The client runs on the same machine as the server, so on a 2-core box it takes CPU from the server:
the figures are a lower bound for a separate client. It is kept as cheap as it gets in Python — one
process, uvloop when installed, keep-alive connections over bare asyncio streams writing request bytes
built before the run — and each level reports its CPU per request next to the server's
(`client_cpu_ms_per_request`, `server_cpu_ms_per_request`, `client_cpu_share`, from /proc).
`--server-root DIR` runs the server from another source tree (e.g. an export of the previous commit)
with the same client, requests and store: before/after comparisons on one machine in one session.

Usage:
    .venv/bin/python bench/load.py --backend sqlite --cases 100000
    .venv/bin/python bench/load.py --backend postgres --cases 100000 --concurrency 1 8 32 --requests 400
    .venv/bin/python bench/load.py --backend sqlite --sqlite-from /tmp/filled.db --server-root /tmp/before --no-ner
One JSON object per concurrency level on stdout (and a summary); progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx  # readiness polling only; the load itself goes through bare asyncio streams
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PLACES = ["渝中区解放碑街道", "沙坪坝区小龙坎街道", "九龙坡区杨家坪街道", "南岸区南坪街道", "北碚区天生街道", "万州区高笋塘街道",
          "江津区几江街道", "永川区中山路街道", "合川区南津街街道", "綦江区古南街道", "彭水县汉葭街道", "酉阳县桃花源街道"]
OPENINGS = [
    "我在{p}一家物流公司上班，公司已经连续{n}个月没有发工资，拖欠我工资共{m}元，人事一直推脱说要等老板签字。",
    "{p}某小区物业公司为了催缴物业费，这周突然把{n}十多户业主家里的水电停了，家里有老人和小孩，生活非常困难。",
    "{p}某路口一家烧烤店每天营业到凌晨{n}点，没有安装油烟净化设备，油烟直接排进居民楼，晚上吵得全楼睡不着。",
    "{p}某村修路的征地补偿款还有{m}元没有发到农户手里，村里账目从来不公开，村民多次询问都没有结果。",
    "我家住在{p}某小区，楼上卫生间漏水已经{n}个月，我家天花板发霉掉灰，找邻居和物业协调了几次都没有解决。",
    "{p}某楼盘购房合同约定去年交房，到现在已经逾期{n}个月，开发商拒绝按合同支付逾期交房违约金，共涉及{m}元。",
]
MIDDLES = [
    "我们先后打过12345热线，也到街道办反映过，工作人员答应尽快处理，但是到现在还是没有任何进展。",
    "相关的合同、收据、照片和聊天记录我都保存着，可以随时提供给有关部门核实。",
    "这件事已经严重影响了我们一家人的正常生活，老人身体不好，孩子还要上学，我们实在没有办法才写信反映。",
    "希望有关部门能够高度重视，派人实地调查了解情况，依法依规作出处理，并把处理结果告诉我们。",
    "我们也咨询过律师，律师建议先向主管部门反映，看能不能通过行政途径解决，尽量不要走诉讼程序。",
]
CLOSING = "恳请领导过问此事，督促相关单位尽快解决，切实维护群众的合法权益。谢谢！"


def petition_text(rng: random.Random, chars: int) -> str:
    place = rng.choice(PLACES)
    text = rng.choice(OPENINGS).format(p=place, n=rng.randint(2, 9), m=rng.randint(3, 90) * 1000)
    while len(text) < chars - len(CLOSING):
        text += rng.choice(MIDDLES)
    return (text[: chars - len(CLOSING)] + CLOSING)[:chars]


def petition_body(rng: random.Random, i: int, chars: int) -> dict[str, Any]:
    body: dict[str, Any] = {"text": petition_text(rng, chars), "channel": "online",
                            "submitted_at": "2026-03-01T10:00:00+08:00"}
    # Every fifth petition comes from a repeat petitioner (same phone as an earlier one).
    who = i // 5 if i % 5 == 0 else i
    body["petitioner"] = {"phone": f"139{who % 100_000_000:08d}"}
    return body


def prepare_store(backend: str, cases: int, tmp: Path, pg_admin: str, sqlite_from: Path | None = None) -> tuple[str, str | None]:
    """Create and fill the database; return (url, PostgreSQL database name to drop or None).

    With `sqlite_from` (SQLite only) a copy of that already filled file is used instead (several runs,
    e.g. before/after a change, then start from the same stored cases)."""
    if backend == "sqlite" and sqlite_from is not None:
        import shutil

        shutil.copy(sqlite_from, tmp / "load.db")
        print(f"store copied from {sqlite_from}", file=sys.stderr)
        return f"sqlite:///{tmp / 'load.db'}", None
    from store_scale import Generator, bulk_fill  # bench/store_scale.py

    from triage.linking.features import load_default_featurizer
    from triage.store import make_engine, upgrade

    dim = load_default_featurizer().dim or 128
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'load.db'}"
    else:
        import sqlalchemy as sa

        pg_name = f"triage_load_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{pg_name}"')
        admin.dispose()
        url = sa.make_url(pg_admin).set(database=pg_name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    t = time.perf_counter()
    if cases:
        bulk_fill(engine, Generator(dim), 0, cases)
    print(f"store filled with {cases:,} synthetic cases in {time.perf_counter() - t:.1f}s (dim {dim})", file=sys.stderr)
    engine.dispose()
    return url, pg_name


def drop_pg(pg_admin: str, name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def request_bytes(host: str, port: int, key: str, body: dict[str, Any]) -> bytes:
    """One complete HTTP/1.1 POST, built before the run (the client then only writes bytes)."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    head = (f"POST /api/v1/petitions/triage HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
    return head + payload


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> tuple[int, bytes]:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("response without Content-Length (the load client reads only sized bodies)")
    return status, await reader.readexactly(length)


def _proc_cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (Linux /proc; 0 for a process that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def server_pids(root: int) -> list[int]:
    """The server process and its descendants (uvicorn's supervisor and workers)."""
    pids, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
        frontier += [int(c) for c in children]
    return pids


async def run_level(host: str, port: int, requests: list[bytes], concurrency: int,
                    server: list[int] | None = None) -> dict[str, Any]:
    """`concurrency` keep-alive connections, each sending the next prebuilt request as soon as its previous
    response is read (closed loop). The client is a bare asyncio stream (uvloop when installed) writing prebuilt
    bytes: its CPU per request is reported (`client_cpu_ms_per_request`) next to the server's."""
    latencies: list[float] = []
    started: list[float] = []
    stages: dict[str, list[float]] = {}  # the server's own pipeline stage times (stages_ms of the responses)
    statuses: dict[int, int] = {}
    pending = list(reversed(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while pending:
                req = pending.pop()
                t = time.perf_counter()
                status, body = await _exchange(reader, writer, req)
                latencies.append((time.perf_counter() - t) * 1000)
                started.append(t - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if status in (200, 201):
                    for k, v in json.loads(body).get("stages_ms", {}).items():
                        stages.setdefault(k, []).append(v)
        finally:
            writer.close()

    cpu0, srv0 = time.process_time(), _proc_cpu_seconds(server or [])
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu1, srv1 = time.process_time(), _proc_cpu_seconds(server or [])
    arr = np.array(latencies)
    slowest = sorted(zip(latencies, started, strict=True), reverse=True)[:5]
    n = len(latencies)
    return {"slowest": [{"ms": round(ms, 1), "started_s": round(st, 2)} for ms, st in slowest],
            "server_stages_p50_ms": {k: round(float(np.percentile(v, 50)), 1) for k, v in stages.items()},
            "concurrency": concurrency, "requests": n, "statuses": statuses,
            "p50_ms": round(float(np.percentile(arr, 50)), 1), "p99_ms": round(float(np.percentile(arr, 99)), 1),
            "mean_ms": round(statistics.fmean(latencies), 1), "throughput_rps": round(n / wall, 1),
            "client_cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / n, 2),
            "server_cpu_ms_per_request": round((srv1 - srv0) * 1000 / n, 2) if server else None,
            "client_cpu_share": round((cpu1 - cpu0) / max((cpu1 - cpu0) + (srv1 - srv0), 1e-9), 3) if server else None}


def _event_loop_runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--cases", type=int, default=100_000, help="synthetic cases stored before the run")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--chars", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    ap.add_argument("--no-ner", action="store_true", help="patterns + gazetteer only (TRIAGE_NER=false)")
    ap.add_argument("--sqlite-from", type=Path, help="copy this filled SQLite file instead of filling (--cases is then "
                    "only reported)")
    ap.add_argument("--server-root", type=Path, default=ROOT,
                    help="run the server from this source tree (e.g. a copy of the previous commit: before/after with the "
                    "same client and store)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra server environment (repeatable)")
    ap.add_argument("--pg-admin", default=os.environ.get("TRIAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()

    from tests.conftest import free_port
    from triage.store import CaseStore, make_engine

    server_root = args.server_root.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="triage-load-"))
    url, pg_name = prepare_store(args.backend, args.cases, tmp, args.pg_admin, args.sqlite_from)
    key_file = tmp / "pii.key"
    env = {**os.environ, "TRIAGE_DATABASE_URL": url, "TRIAGE_PII_KEY_FILE": str(key_file), "TRIAGE_LOG_LEVEL": "WARNING",
           "TRIAGE_RATE_LIMIT_PER_SECOND": "100000", "TRIAGE_RATE_LIMIT_BURST": "100000",
           "TRIAGE_NER": "false" if args.no_ner else "true", "TRIAGE_DB_AUTO_UPGRADE": "never",
           "PYTHONPATH": str(server_root), **dict(e.split("=", 1) for e in args.env)}
    from triage.store import load_pii_secret

    store = CaseStore(make_engine(url), pii_secret=load_pii_secret(None, key_file))
    _, key = store.create_api_key("load-bench", "clerk")
    store.engine.dispose()
    port = free_port()
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "triage_cli.main", "serve", "--port", str(port), "--workers",
                             str(args.workers)], cwd=server_root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server not ready after 180 s")
            time.sleep(0.5)
        rng = random.Random(20260301)
        total = args.warmup + args.requests * len(args.concurrency)
        reqs = [request_bytes("127.0.0.1", port, key, petition_body(rng, i, args.chars)) for i in range(total)]
        run = _event_loop_runner()
        pids = server_pids(proc.pid)
        print(f"warm-up {args.warmup} requests", file=sys.stderr)
        run(run_level("127.0.0.1", port, reqs[: args.warmup], 2))
        results = []
        offset = args.warmup
        for c in args.concurrency:
            load0 = os.getloadavg()[0]
            res = run(run_level("127.0.0.1", port, reqs[offset: offset + args.requests], c, pids))
            offset += args.requests
            res.update(backend=args.backend, stored_cases=args.cases, chars=args.chars, workers=args.workers,
                       ner=not args.no_ner, cpus=os.cpu_count(), server_root=str(server_root),
                       loadavg=[round(load0, 2)] + [round(x, 2) for x in os.getloadavg()])
            print(json.dumps(res, ensure_ascii=False), flush=True)
            results.append(res)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if pg_name:
            drop_pg(args.pg_admin, pg_name)
    target = next((r for r in results if r["concurrency"] == 8), None)
    if target:
        print(json.dumps({"target_c8": {"p50_ms": target["p50_ms"], "p99_ms": target["p99_ms"],
                                        "meets_p50_25ms": target["p50_ms"] <= 25, "meets_p99_100ms": target["p99_ms"] <= 100}}))


if __name__ == "__main__":
    main()
