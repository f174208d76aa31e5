"""Service-by-service scaling: the grid service with 1, then 2 replicas, the other services untouched.

Grid runs as separate processes of one consumer group (``Platform.add_replica``); audit runs beside
it with its own group and database. Each phase publishes a burst of ``SCALING_BURST``
RequestReceived events straight to the requests topic (keyed by request id, so they spread over
its partitions) and times the burst until every request's RequestAssigned is on the broker (broker
timestamps). Reported per phase: assignments/s, the partitions each replica owns, each grid
process's CPU, and audit's consumer lag after the phase (its group is separate, so scaling grid
leaves it alone). On this 2-core machine the replicas share the cores and the one store with
everything else, so the rise is bounded by those, not by the partitioning.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import KAFKA, MONGO, Observer, audit_caught_up, demo_grids, end_offsets  # noqa: E402
from civicgrid_contracts import Envelope, topics  # noqa: E402
from civicgrid_contracts.calendar import DEFAULT_CALENDAR  # noqa: E402
from civicgrid_contracts.events.intake import RequestReceived  # noqa: E402
from civicgrid_contracts.values import Location, TimeLimits  # noqa: E402
from civicgrid_runtime.bus import EventPublisher  # noqa: E402
from tests.support.platform import Platform  # noqa: E402

BURST = int(os.environ.get("SCALING_BURST", "1500"))
REPLICAS = int(os.environ.get("SCALING_MAX_REPLICAS", "2"))
console = Console(width=150)


async def grid_boxes(p: Platform) -> list[list[float]]:
    async with httpx.AsyncClient(timeout=30) as c:
        return [g["bbox"] for g in await demo_grids(c, p)]


def received(rid: str, box: list[float], i: int) -> Envelope:
    min_lon, min_lat, max_lon, max_lat = box
    f = (i % 97) / 97
    return Envelope.wrap(RequestReceived.starting_clocks(DEFAULT_CALENDAR,
        request_id=rid, service_code="sanitation", service_name="Environment and sanitation",
        service_group="environment", time_limits=TimeLimits(response_hours=2, resolution_hours=48),
        location=Location(lat=min_lat + f * (max_lat - min_lat), lon=min_lon + (1 - f) * (max_lon - min_lon)),
        description="scaling bench", channel="app", received_at=datetime.now(UTC)), source="/civicgrid/bench")


async def owners(group: str) -> list[int]:
    """Partitions of the requests topic owned by each member of the group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        from aiokafka.protocol.group import MemberAssignment

        [response] = await admin.describe_consumer_groups([group])
        members = response.groups[0][5]  # (error, group, state, protocol type, protocol, members, ...)
        out = []
        for member in members:
            assignment = MemberAssignment.decode(member[4])  # (id, client id, host, metadata, assignment)
            out.append(sum(len(parts) for topic, parts in assignment.assignment if topic == topics.REQUESTS.name))
        return sorted(out)
    except Exception:  # noqa: BLE001 - only for the report
        return []
    finally:
        await admin.close()


async def phase(p: Platform, pub: EventPublisher, boxes: list[list[float]], n: int) -> dict:
    obs = Observer()
    start = await end_offsets([topics.ASSIGNMENTS.name])
    task = asyncio.create_task(obs.run(start))
    await asyncio.sleep(1)
    ids = [f"scale-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    procs = [psutil.Process(sp.proc.pid) for k, sp in p.services.items() if k.startswith("grid")]
    for pr in procs:
        pr.cpu_percent(None)
    t0 = time.time()
    await pub.publish_many([received(rid, boxes[i % len(boxes)], i) for i, rid in enumerate(ids)])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = [obs.first[r].get("civicgrid.request.assigned") for r in ids]
        if all(done):
            break
        await asyncio.sleep(0.2)
    cpu = [pr.cpu_percent(None) for pr in procs]
    obs.stop.set()
    await task
    times = [obs.first[r].get("civicgrid.request.assigned") for r in ids]
    got = [t for t in times if t]
    elapsed = (max(got) - t0) if got else float("nan")
    return {"assigned": len(got), "n": n, "seconds": elapsed, "rate": len(got) / elapsed if got else 0.0,
            "cpu": cpu, "owners": await owners(p.group("grid")),
            "audit_caught_up": await audit_caught_up(p.group("audit"), [t.name for t in topics.EVENT_TOPICS])}


async def run(p: Platform) -> list[dict]:
    boxes = await grid_boxes(p)
    pub = EventPublisher(KAFKA, client_id="scaling-bench")
    await pub.start()
    rows = []
    try:
        await phase(p, pub, boxes, 100)  # warm-up: caches, connections
        for replicas in range(1, REPLICAS + 1):
            if replicas > 1:
                await asyncio.to_thread(p.add_replica, "grid")
                await asyncio.sleep(6)  # the group rebalances
                await phase(p, pub, boxes, 100)
            r = await phase(p, pub, boxes, BURST)
            # audit is a separate group: give it the same time to catch up before judging it
            for _ in range(60):
                if r["audit_caught_up"]:
                    break
                await asyncio.sleep(1)
                r["audit_caught_up"] = await audit_caught_up(p.group("audit"), [t.name for t in topics.EVENT_TOPICS])
            rows.append({"replicas": replicas, **r})
    finally:
        await pub.stop()
    return rows


def main() -> None:
    console.print(f"scaling benchmark: grid replicas 1..{REPLICAS}, bursts of {BURST} requests "
                  f"({topics.REQUESTS.name} has {topics.REQUESTS.partitions} partitions)")
    p = Platform(KAFKA, MONGO)
    try:
        p.start(("grid", "audit"))
        rows = asyncio.run(run(p))
    finally:
        p.stop()
    t = Table(title="grid scaled on its own (real Kafka + store)")
    for c in ("grid replicas", "assigned", "seconds", "assignments/s", "vs 1 replica", "requests partitions per replica",
              "grid CPU % per replica", "audit caught up"):
        t.add_column(c)
    base = rows[0]["rate"] if rows else 0
    for r in rows:
        t.add_row(str(r["replicas"]), f"{r['assigned']}/{r['n']}", f"{r['seconds']:.1f}", f"{r['rate']:.0f}",
                  f"{r['rate'] / base:.2f}x" if base else "-", str(r["owners"]), str([round(c) for c in r["cpu"]]),
                  str(r["audit_caught_up"]))
    console.print(t)
    print("RESULT scaling " + " ".join(f"replicas{r['replicas']}={r['rate']:.0f}/s" for r in rows))


if __name__ == "__main__":
    main()
