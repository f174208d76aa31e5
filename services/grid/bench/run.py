"""grid's part of `make bench`: prints measured figures next to the issue's goals.

1. point lookups/s on the megacity map (vectorised STRtree point-in-polygon), and a per-call baseline
2. a map version saved and loaded (``MapRepository``, in this process) for the `city` demo map; and
   (run last) the megacity saved, then loaded by a real `civicgrid-grid serve` process, and its RSS
3. assignments/s end to end (RequestReceived published -> RequestAssigned consumed) through Kafka and
   the store, and the p99 of that hop at 200 requests/s; raw baselines: store update_one/s and a bare
   Kafka produce->consume round trip
Needs KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL. Arguments name the parts to run (``lookups``,
``maps``, ``end-to-end``); none runs all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from civicgrid_contracts import Envelope, topics
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_grid.adapters.mapstore import MapRepository
from civicgrid_grid.adapters.repos import RosterRepository, StaffRepository
from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.demo.roster import build_roster
from civicgrid_runtime.bus import EventPublisher, ensure_topics
from civicgrid_runtime.store import connect
from civicgrid_runtime.testing import drop_quietly

KAFKA = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
MONGO = os.environ["MONGODB_URL"]
rows: list[tuple[str, str, str, str]] = []


def row(name: str, goal: str, measured: str, note: str = "") -> None:
    rows.append((name, goal, measured, note))
    print(f"  {name}: {measured} (goal {goal}) {note}", flush=True)


async def move_group_to_end(group: str, names: list[str]) -> None:
    c = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in names for p in (c.partitions_for_topic(t) or ())]
        c.assign(tps)
        await c.seek_to_end(*tps)
        await c.commit({tp: await c.position(tp) for tp in tps})
    finally:
        await c.stop()


def bench_lookups() -> None:
    print("1. point lookups on the megacity", flush=True)
    t = time.perf_counter()
    city = generate("megacity", 42)
    gen = time.perf_counter() - t
    t = time.perf_counter()
    city.build_index()
    idx = time.perf_counter() - t
    x0, y0, x1, y1 = city.extent()
    rng = np.random.default_rng(1)
    n = 1_000_000
    px, py = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    city.grid_indices(px[:1000], py[:1000])
    t = time.perf_counter()
    for i in range(0, n, 100_000):
        city.grid_indices(px[i:i + 100_000], py[i:i + 100_000])
    rate = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(5000):
        city.locate(lat=py[i], lon=px[i])
    single = 5000 / (time.perf_counter() - t)
    row("megacity generated", "-", f"{gen:.1f} s + index {idx:.2f} s", str(city.counts()))
    row("point lookups/s (batches of 100k)", ">= 200,000/s", f"{rate:,.0f}/s")
    row("baseline: one locate() call per point", "-", f"{single:,.0f}/s", "(what a per-event handler gets)")


async def bench_maps(sizes: tuple[str, ...]) -> None:
    print(f"2. map versions saved and loaded ({', '.join(sizes)}, seed 42)", flush=True)
    client = connect(MONGO, app_name="grid-bench")
    try:
        for size in sizes:
            db_name = f"grid_bench_{size}_{uuid.uuid4().hex[:6]}"
            city = generate(size, 42)
            counts = city.counts()
            repo = MapRepository(client[db_name])
            await repo.ensure_indexes()
            t = time.perf_counter()
            version = await repo.save(city, source=f"bench {size}")
            save_s = time.perf_counter() - t
            del city
            note = f"({counts['grids']:,} grids, {counts['buildings']:,} buildings"
            try:
                if size == "megacity":  # loaded once, by serve as deployed (a second load would double the part's time)
                    row("megacity map saved", "-", f"{save_s:.1f} s", note + ")")
                    await bench_rss(db_name)
                    continue
                t = time.perf_counter()
                loaded = await repo.load(version)
                load_s = time.perf_counter() - t
                assert loaded.counts() == counts, (loaded.counts(), counts)
                row(f"{size} map saved / loaded", "-", f"{save_s:.1f} s / {load_s:.1f} s",
                    note + "; the load includes the spatial index)")
            finally:
                await drop_quietly(client, db_name)
    finally:
        await client.close()


async def bench_rss(db_name: str) -> None:
    """A real ``civicgrid-grid serve`` on the database the megacity was saved in."""
    await ensure_topics(KAFKA)
    group = f"grid-bench-{uuid.uuid4().hex[:6]}"
    await move_group_to_end(group, [t.name for t in topics.EVENT_TOPICS if t.owner != "grid"])
    t = time.perf_counter()
    proc, port = spawn_grid(db_name, group)
    try:
        rss = None
        async with httpx.AsyncClient() as http:
            while time.perf_counter() - t < 240:
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/v1/map", timeout=5)
                    if r.status_code == 200 and r.json()["counts"]["grids"] == 35200:
                        # exercise the index once so it is built and counted
                        await http.get(f"http://127.0.0.1:{port}/v1/map/locate",
                                       params={"lat": 40.0, "lon": 116.5}, timeout=30)
                        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        load_s = time.perf_counter() - t
        row("RSS of serve with megacity loaded", "< 300 MB", f"{rss:.0f} MB" if rss else "did not load in 240 s",
            f"(process up + megacity loaded in {load_s:.1f} s)")
    finally:
        stop_process(proc)


class Collector:
    def __init__(self) -> None:
        # hops are timed by the broker's record times, not by when this sees them: fetching lazily
        # (the broker waits for a bulk of records) leaves the measured processes the CPU
        self.consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False,
                                         fetch_min_bytes=256 * 1024, fetch_max_wait_ms=300)
        self.seen: dict[str, float] = {}

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        name = topics.ASSIGNMENTS.name
        tps = [TopicPartition(name, p) for p in self.consumer.partitions_for_topic(name)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        while True:
            for recs in (await self.consumer.getmany(timeout_ms=300)).values():
                for r in recs:
                    if dict(r.headers).get("ce_type") == b"civicgrid.request.assigned":
                        # the broker's record time (set when grid published it): the collector's own
                        # polling adds nothing to the measured hop
                        self.seen.setdefault(r.key.decode(), r.timestamp / 1000)

    async def wait(self, ids: list[str], timeout: float) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline and not all(i in self.seen for i in ids):
            await asyncio.sleep(0.05)
        return sum(1 for i in ids if i in self.seen)


def received(city, rng) -> Envelope:
    b = city.buildings_of("", limit=1, seed=int(rng.integers(1 << 30)))[0]
    p = RequestReceived.starting_clocks(DEFAULT_CALENDAR, request_id=f"bench-{uuid.uuid4().hex[:12]}", service_code="repair", service_name="Repair",
                        time_limits=TimeLimits(response_hours=2, resolution_hours=48),
                        location=Location(lat=b["lat"], lon=b["lon"]), description="bench", channel="web",
                        received_at=datetime.now(UTC))
    return Envelope.wrap(p, source="/civicgrid/bench")


def spawn_grid(db_name: str, group: str) -> tuple[subprocess.Popen, int]:
    """``civicgrid-grid serve`` in its own process, as deployed; returns it and its HTTP port."""
    port = 18102 + int(uuid.uuid4().int % 500)
    env = dict(os.environ, GRID_DATABASE=db_name, GRID_CONSUMER_GROUP=group, GRID_HTTP_PORT=str(port),
               GRID_LOG_LEVEL="WARNING")
    exe = os.path.join(os.path.dirname(sys.executable), "civicgrid-grid")
    return subprocess.Popen([exe, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def start_grid_process(db_name: str, group: str) -> subprocess.Popen:
    """``spawn_grid``, then wait until it answers ready."""
    proc, port = spawn_grid(db_name, group)
    async with httpx.AsyncClient() as http:
        t = time.perf_counter()
        while time.perf_counter() - t < 60:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    proc.kill()
    raise RuntimeError("civicgrid-grid serve did not become ready in 60 s")


async def bench_end_to_end() -> None:
    print("3. end to end RequestReceived -> RequestAssigned (district demo city, real Kafka + store)", flush=True)
    await ensure_topics(KAFKA)
    group = f"grid-bench-{uuid.uuid4().hex[:6]}"
    await move_group_to_end(group, [t.name for t in topics.EVENT_TOPICS if t.owner != "grid"])
    db_name = f"grid_bench_{uuid.uuid4().hex[:6]}"
    client = connect(MONGO, app_name="grid-bench")
    db = client[db_name]
    city = generate("district", 5)
    await MapRepository(db).save(city, source="bench")
    roster = build_roster(city, load_limit=1000)
    await StaffRepository(db).upsert_many(roster["staff"])
    rr = RosterRepository(db)
    for name in ("posts", "chain", "departments"):
        await rr.upsert(name, roster[name])
    col = Collector()
    await col.start()
    proc = await start_grid_process(db_name, group)  # the service on its own core, not in this loop
    pub = EventPublisher(KAFKA, client_id="grid-bench")
    await pub.start()
    rng = np.random.default_rng(3)
    try:
        # raw baselines
        raw = db["bench_raw"]
        await raw.insert_many([{"_id": f"r{i}", "x": 0, "pad": "x" * 2000} for i in range(2000)])
        t = time.perf_counter()
        for i in range(100):
            await raw.update_one({"_id": f"r{i}"}, {"$inc": {"x": 1}})
        raw_upd = 100 / (time.perf_counter() - t)
        row("baseline: store update_one/s (2,000-doc collection)", "-", f"{raw_upd:,.0f}/s",
            "one update by _id at a time: the floor of a per-event handler")
        prod = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=0)
        await prod.start()
        rt = []
        cons = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
        await cons.start()
        tp = TopicPartition(topics.dead_letter("grid-bench").name, 0)
        await ensure_topics(KAFKA, [topics.dead_letter("grid-bench")])
        cons.assign([tp])
        await cons.seek_to_end(tp)
        await cons.position(tp)
        for _ in range(50):
            t = time.perf_counter()
            await (await prod.send(tp.topic, b"x", partition=0))
            while not (await cons.getmany(timeout_ms=20)):
                pass
            rt.append((time.perf_counter() - t) * 1000)
        await prod.stop()
        await cons.stop()
        row("baseline: bare Kafka produce->consume", "-", f"p50 {np.percentile(rt, 50):.1f} ms, "
            f"p99 {np.percentile(rt, 99):.1f} ms")

        # warm-up: the process has its partitions and has assigned a few requests
        warm = [received(city, rng) for _ in range(20)]
        await pub.publish_many(warm)
        await col.wait([e.subject for e in warm], timeout=60)

        # throughput: a burst large enough that start-up of the first batch does not dominate
        n = 6000
        envs = [received(city, rng) for _ in range(n)]
        t = time.time()
        await pub.publish_many(envs)
        got = await col.wait([e.subject for e in envs], timeout=90)
        last = max(col.seen[e.subject] for e in envs if e.subject in col.seen)
        row(f"assignments/s end to end (burst of {n:,})", ">= 2,000/s", f"{got / (last - t):,.0f}/s",
            f"({got}/{n} assigned; grid as its own process)")

        # latency at 20 requests/s (the figure: a district's busiest hour is far below it) and
        # at 200 requests/s, each for 10 s, in the steady state (the burst's after-effects are over)
        for rate, goal in ((20, "< 200 ms"), (200, "< 50 ms")):
            await asyncio.sleep(2)
            samples = rate * 10
            sent: dict[str, float] = {}
            ids = []
            t0 = time.perf_counter()
            for i in range(samples):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                e = received(city, rng)
                sent[e.subject] = time.time()
                ids.append(e.subject)
                await pub.publish(e)
            got = await col.wait(ids, timeout=60)
            lat = [(col.seen[i] - sent[i]) * 1000 for i in ids if i in col.seen]
            row(f"p99 received->assigned at {rate} req/s (10 s)", goal,
                f"p99 {np.percentile(lat, 99):,.0f} ms (p50 {np.percentile(lat, 50):,.0f} ms)",
                f"({got}/{samples} assigned; from publish to the broker's time of the assignment)")
    finally:
        await col.consumer.stop()
        col.task.cancel()
        await pub.stop()
        stop_process(proc)
        await drop_quietly(client, db_name)
        await client.close()


async def main() -> None:
    started = time.perf_counter()
    only = set(sys.argv[1:])
    if not only or "lookups" in only:
        bench_lookups()
    if not only or "maps" in only:
        await bench_maps(("city",))
    if not only or "end-to-end" in only:
        await bench_end_to_end()
    if not only or "maps" in only:  # the longest part last: should the part's time run out, only it is lost
        await bench_maps(("megacity",))
    print()
    print(f"grid bench ({time.perf_counter() - started:.0f} s)")
    w = [max(len(r[i]) for r in rows + [("figure", "goal", "measured", "note")]) for i in range(4)]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(("figure", "goal", "measured", "note"))))
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    asyncio.run(main())
