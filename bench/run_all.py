"""`make bench`: every benchmark in one run, against the real broker and store.

Runs the foundation benchmark, then each service's ``services/<svc>/bench/run.py`` that exists,
then the full-pipeline benchmark (``bench/pipeline.py``) and the scaling one (``bench/scaling.py``).
Each prints its own table; a failing part is reported and the others still run. The pipeline
benchmark writes what one request cost (``.run/bench/costs.json``); from it, ``docs/capacity.md`` is
written again at the end (``bench/capacity.py``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PART_TIMEOUT = float(os.environ.get("BENCH_PART_TIMEOUT", "420"))  # seconds; each part stops by itself
PARTS = [ROOT / "bench" / "unit_layer.py", ROOT / "bench" / "foundation.py"]
PARTS += [ROOT / "services" / s / "bench" / "run.py" for s in ("intake", "grid", "matching", "audit", "console")]
PARTS += [ROOT / "bench" / "pipeline.py", ROOT / "bench" / "scaling.py"]


WARM_UP_SECONDS = float(os.environ.get("BENCH_WARM_UP_SECONDS", "20"))


async def warm_up(seconds: float) -> None:
    """Traffic like the services' (small produces, fetches as they land, small store writes and
    reads) before anything is measured: a broker just started runs in the JVM's interpreter until
    its hot paths are compiled, and the first parts measured that (grid's p99 at 200/s 195 ms in
    a cold run against 40-70 ms warm)."""
    import uuid

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from civicgrid_contracts.topics import TopicSpec
    from civicgrid_runtime.bus import ensure_topics
    from civicgrid_runtime.store import connect
    from civicgrid_runtime.testing import drop_quietly

    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"bench.warm-up.{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka, [TopicSpec(topic, "bench", "warm-up traffic", config={"retention.ms": "600000"})])
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=0, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", fetch_max_wait_ms=50)
    client = connect(os.environ["MONGODB_URL"], app_name="bench-warm-up")
    db = f"bench_warm_up_{uuid.uuid4().hex[:6]}"
    col = client[db]["docs"]
    await producer.start()
    await consumer.start()
    stop = time.monotonic() + seconds

    async def produce() -> None:
        i = 0
        while time.monotonic() < stop:
            await asyncio.gather(*[(await producer.send(topic, b"x" * 300, key=str(i + k).encode()))
                                   for k in range(20)])
            i += 20

    async def consume() -> None:
        while time.monotonic() < stop:
            await consumer.getmany(timeout_ms=100)

    async def store() -> None:
        i = 0
        while time.monotonic() < stop:
            await col.insert_one({"_id": i, "n": 0, "pad": "x" * 500})
            await col.update_one({"_id": i // 2}, {"$inc": {"n": 1}})
            await col.find_one({"_id": i // 3})
            i += 1

    try:
        await asyncio.gather(produce(), consume(), store())
    finally:
        await producer.stop()
        await consumer.stop()
        await drop_quietly(client, db)
        await client.close()


def main() -> int:
    from civicgrid_runtime.bus import ensure_topics

    # a fresh broker has no topics yet: create the registry's before any part reads offsets
    asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
    if WARM_UP_SECONDS > 0:
        print(f"warming the broker and the store up for {WARM_UP_SECONDS:.0f} s ...", flush=True)
        asyncio.run(warm_up(WARM_UP_SECONDS))
    started = time.time()
    only = set(sys.argv[1:])
    failed = []
    for part in PARTS:
        if not part.exists() or (only and not any(o in str(part) for o in only)):
            continue
        name = part.relative_to(ROOT)
        print(f"\n===== {name} =====", flush=True)
        t = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(part)], cwd=ROOT, env=os.environ, timeout=PART_TIMEOUT)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        print(f"----- {name}: exit {code} in {time.monotonic() - t:.0f}s", flush=True)
        if code != 0:
            failed.append(str(name))
    costs = Path(os.environ.get("BENCH_COSTS_FILE", ROOT / ".run" / "bench" / "costs.json"))
    if costs.exists() and costs.stat().st_mtime > started:
        subprocess.run([sys.executable, "-m", "bench.capacity", str(costs)], cwd=ROOT, check=False)
    if failed:
        print("benchmarks that failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
