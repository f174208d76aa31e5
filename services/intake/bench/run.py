"""Intake benchmark: sustained accepted submissions/s and latency at a fixed rate, beside a bare
endpoint of the same web stack, in the same run, against the real broker and store.

    KAFKA_BOOTSTRAP_SERVERS=... MONGODB_URL=... .venv/bin/python services/intake/bench/run.py

The closed loop runs at two concurrencies, 16 and 64 keep-alive connections, for both servers. At
16, intake's figure is bounded by how long a submission waits for its batch's store writes (16
connections over a p50 of 15-20 ms), not by what the process can do; 64 measures its capacity
(submissions wait in bigger batches, and the p99 under that load is printed beside it). The
throughput goal is checked on the higher of the two, and both rows are printed.

Both servers run as subprocesses (uvicorn, one worker; intake as ``civicgrid-intake serve`` with its
consumers and relay). The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams
in this process (httpx costs several times more CPU per request, and on a 2-core machine the
generator competes with the server for the same cores). Latency at the fixed rate is measured from
each request's *scheduled* send time (no coordinated omission).

Goals (issue 3): >= 1,000 accepted requests/s; p99 < 50 ms at 200 requests/s; >= 30% of the bare
endpoint's throughput.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
from httpload import Connection, post_json  # noqa: E402
from processes import cpu_seconds, infrastructure  # noqa: E402

BIN = Path(sys.executable).parent
KAFKA = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
MONGO = os.environ["MONGODB_URL"]
THROUGHPUT_SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
RATE = float(os.environ.get("BENCH_RATE", "200"))
RATE_SECONDS = float(os.environ.get("BENCH_RATE_SECONDS", "5"))
LOW_RATE = float(os.environ.get("BENCH_LOW_RATE", "50"))
CONCURRENCIES = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "16,64").split(",")]
REQUEST_TIMEOUT = 5.0
SERVICES = [("sanitation", {"waste_type": "household"}), ("neighbour_dispute", {}), ("greening", {}),
            ("public_facility", {"facility": "streetlight"}), ("other", {})]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submission(i: int) -> bytes:
    code, attrs = SERVICES[i % len(SERVICES)]
    return json.dumps({
        "service_code": code, "location": {"lat": 39.8 + random.random() * 0.2, "lon": 116.3 + random.random() * 0.2},
        "description": "楼道里堆放杂物，影响通行，请尽快清理。Rubbish in the stairwell blocks the way.",
        "attributes": attrs, "channel": "app",
        "contact": {"name": "Bench Resident", "phone": f"139{random.randint(0, 99999999):08d}"},
    }, ensure_ascii=False).encode()


def http_request(port: int, body: bytes) -> bytes:
    return post_json("127.0.0.1", port, "/api/v1/requests", body)


async def closed_loop(port: int, seconds: float, concurrency: int) -> dict:
    """As fast as possible with ``concurrency`` keep-alive connections."""
    ok = err = 0
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal ok, err
        c = Connection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            while time.perf_counter() < stop:
                raw = http_request(port, submission(next(counter)))
                t = time.perf_counter()
                status, _ = await c.send(raw)
                lat.append(time.perf_counter() - t)
                if status == 201:
                    ok += 1
                else:
                    err += 1
        finally:
            c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"ok": ok, "err": err, "rps": ok / elapsed, **percentiles(lat)}


async def fixed_rate(port: int, rate: float, seconds: float) -> dict:
    """Open loop: one request every 1/rate s; latency from the scheduled time."""
    n = int(rate * seconds)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(Connection("127.0.0.1", port, timeout=REQUEST_TIMEOUT))
    lat: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        scheduled = start + i / rate
        raw = http_request(port, submission(i))
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        c = await pool.get()
        try:
            # a request that could not even start within 5 s of its slot counts as refused (status 0)
            status = 0 if time.perf_counter() - scheduled > 5 else (await c.send(raw))[0]
        finally:
            pool.put_nowait(c)
        lat.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    while not pool.empty():
        pool.get_nowait().close()
    return {"sent": n, "ok": statuses.get(201, 0), "statuses": statuses, **percentiles(lat)}


def percentiles(lat: list[float]) -> dict:
    if not lat:
        return {"p50": float("nan"), "p99": float("nan")}
    s = sorted(lat)
    return {"p50": s[len(s) // 2] * 1000, "p99": s[min(len(s) - 1, int(len(s) * 0.99))] * 1000}


def wait_ready(port: int, proc: subprocess.Popen, path: str, timeout: float = 90) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001
            time.sleep(0.2)
    raise RuntimeError("server not ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def say(msg: str) -> None:
    print(f"[intake bench] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    from civicgrid_contracts import topics
    from civicgrid_runtime.testing import start_group_at_end

    db_name = f"intake_bench_{uuid.uuid4().hex[:8]}"
    group = f"intake_bench_{uuid.uuid4().hex[:8]}"
    # intake's status consumer starts at the end of the topics: earlier runs' events are not its load
    asyncio.run(start_group_at_end(KAFKA, group, [t.name for t in topics.EVENT_TOPICS]))
    env = {**os.environ, "INTAKE_DATABASE": db_name, "INTAKE_CONSUMER_GROUP": group, "INTAKE_LOG_LEVEL": "WARNING"}
    results: dict[str, dict] = {}
    logs = Path(os.environ.get("TMPDIR", "/tmp"))

    # --- bare baseline
    bport = free_port()
    bare = subprocess.Popen([str(BIN / "uvicorn"), "bare_app:app", "--port", str(bport), "--loop", "uvloop",
                             "--http", "httptools", "--workers", "1", "--log-level", "warning", "--no-access-log"],
                            cwd=Path(__file__).parent, stdout=(logs / "bench-bare.log").open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        wait_ready(bport, bare, "/docs")
        say("bare endpoint: closed loop, then fixed rate")
        asyncio.run(closed_loop(bport, 2, CONCURRENCIES[0]))  # warm-up
        for c in CONCURRENCIES:
            results[f"bare_max_{c}"] = asyncio.run(closed_loop(bport, THROUGHPUT_SECONDS, c))
        results["bare_rate"] = asyncio.run(fixed_rate(bport, RATE, RATE_SECONDS))
    finally:
        stop(bare)

    # --- intake, the real service with Kafka and the store beside it
    iport = free_port()
    intake = subprocess.Popen([str(BIN / "civicgrid-intake"), "serve", "--port", str(iport)], cwd=ROOT, env=env,
                              stdout=(logs / "bench-intake.log").open("wb"), stderr=subprocess.STDOUT)
    mongo = MongoClient(MONGO, socketTimeoutMS=30000, serverSelectionTimeoutMS=5000)
    try:
        wait_ready(iport, intake, "/health/ready")
        col = mongo[db_name]["requests"]

        def drain(limit: float = 20) -> float:
            t = time.monotonic()
            while col.count_documents({"_outbox_pending": True}) and time.monotonic() - t < limit:
                time.sleep(0.5)
            return time.monotonic() - t

        say("intake: closed loop, then a sustainable fixed rate, then the goal's fixed rate")
        asyncio.run(closed_loop(iport, 2, CONCURRENCIES[0]))  # warm-up (connections, caches)
        # what shares the cores during the load: the service, the store, the broker and this generator
        procs = {"intake": psutil.Process(intake.pid), "load generator": psutil.Process(), **infrastructure(
            Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")))}
        cpu: dict[int, dict[str, float]] = {}
        for c in CONCURRENCIES:
            before = cpu_seconds(procs)
            results[f"intake_max_{c}"] = asyncio.run(closed_loop(iport, THROUGHPUT_SECONDS, c))
            after = cpu_seconds(procs)
            ok = results[f"intake_max_{c}"]["ok"] or 1
            cpu[c] = {n: (after[n] - before[n]) / ok * 1e6 for n in after if n in before}  # us a submission
            results[f"cpu_us_{c}"] = cpu[c]
            drain()
        results["intake_low"] = asyncio.run(fixed_rate(iport, LOW_RATE, RATE_SECONDS))
        drain()
        results["intake_rate"] = asyncio.run(fixed_rate(iport, RATE, RATE_SECONDS))
        say("waiting for the outbox to drain")
        drained = drain(30)
        stored = col.estimated_document_count()
        left = col.count_documents({"_outbox_pending": True})
    finally:
        stop(intake)
        mongo.drop_database(db_name)
        mongo.close()

    ir, br, il = results["intake_rate"], results["bare_rate"], results["intake_low"]
    best = max(CONCURRENCIES, key=lambda c: results[f"intake_max_{c}"]["rps"])
    im, bm = results[f"intake_max_{best}"], results[f"bare_max_{best}"]
    ratio = im["rps"] / bm["rps"] if bm["rps"] else 0.0
    rows = [(f"accepted submissions/s (closed loop, {c} conns)", ">= 1000" if c == best else "",
             f"{results[f'intake_max_{c}']['rps']:.0f}", f"bare: {results[f'bare_max_{c}']['rps']:.0f}/s")
            for c in CONCURRENCIES]
    rows += [
        (f"share of the bare endpoint's throughput ({best} conns)", ">= 30%", f"{ratio * 100:.0f}%", ""),
        (f"p50 latency at {RATE:.0f} req/s (ms)", "", f"{ir['p50']:.1f}", f"bare: {br['p50']:.1f}"),
        (f"p99 latency at {RATE:.0f} req/s (ms)", "< 50", f"{ir['p99']:.1f}", f"bare: {br['p99']:.1f}"),
        ("accepted at fixed rate", f"{ir['sent']}", f"{ir['ok']}", f"statuses {ir['statuses']}"),
        (f"p50 / p99 at {LOW_RATE:.0f} req/s (ms)", "", f"{il['p50']:.1f} / {il['p99']:.1f}",
         f"{il['ok']}/{il['sent']} accepted"),
        *[(f"p50 / p99 under max load, {c} conns (ms)", "",
           f"{results[f'intake_max_{c}']['p50']:.1f} / {results[f'intake_max_{c}']['p99']:.1f}",
           f"bare: {results[f'bare_max_{c}']['p50']:.1f} / {results[f'bare_max_{c}']['p99']:.1f}")
          for c in CONCURRENCIES],
        (f"CPU a submission, {best} conns (us)", "",
         f"{sum(cpu[best].values()):.0f}", ", ".join(f"{n} {v:.0f}" for n, v in cpu[best].items())),
        ("the 30% goal's budget: 2 cores over 30% of bare (us)", "",
         f"{2e6 / (0.3 * bm['rps']):.0f}" if bm["rps"] else "-",
         f"store + broker + load generator alone: "
         f"{sum(v for n, v in cpu[best].items() if n != 'intake'):.0f}"),
        ("all stored requests published (outbox drained)", "yes", "yes" if not left else f"no ({left} left)",
         f"{stored} stored; drained {drained:.1f}s after load"),
    ]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="intake: submissions (real Kafka + store, 1 uvicorn worker)")
        for h in ("figure", "goal", "measured", "baseline / note"):
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        Console().print(table)
    except ImportError:
        for r in rows:
            print(" | ".join(r))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "statuses"} for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
