"""A grid process killed after it stored an assignment and before it published it: the restarted
process publishes the assignment exactly once and counts the load once (real broker and store,
``civicgrid-grid serve`` as deployed)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import httpx
import pytest

from civicgrid_contracts import topics
from civicgrid_grid.adapters.mapstore import MapRepository
from civicgrid_grid.adapters.repos import RosterRepository, StaffRepository
from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.demo.roster import build_roster, staff_ids_for_grid
from civicgrid_grid.handlers import CRASH_AFTER_ASSIGNMENT
from civicgrid_runtime.bus import EventPublisher, ensure_topics
from civicgrid_runtime.store import CAUSED
from civicgrid_runtime.testing import drop_quietly, eventually, unique

from .conftest import Collector, Harness, move_group_to_end

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_grid(infra, db_name: str, group: str, **env: str) -> subprocess.Popen:
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "civicgrid-grid"), "serve"],
        env=dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=infra.kafka, MONGODB_URL=infra.mongodb, GRID_DATABASE=db_name,
                 GRID_CONSUMER_GROUP=group, GRID_HTTP_PORT=str(port), GRID_LOG_LEVEL="WARNING", **env),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    async def ready() -> bool:
        assert proc.poll() is None, f"grid exited early: {proc.stderr.read()[-2000:]}"
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready, timeout=60, interval=0.3)
    return proc


async def test_killed_between_store_and_publish_publishes_exactly_once(infra, mongo):
    await ensure_topics(infra.kafka)
    db_name, group = unique("grid_crash"), unique("grid_crash")
    await move_group_to_end(infra.kafka, group, [t.name for t in topics.EVENT_TOPICS if t.owner != "grid"])
    db = mongo[db_name]
    city = generate("street", 3)
    await MapRepository(db).save(city, source="test")
    roster = build_roster(city, load_limit=5)
    await StaffRepository(db).upsert_many(roster["staff"])
    for name in ("posts", "chain", "departments"):
        await RosterRepository(db).upsert(name, roster[name])
    collector = Collector(infra.kafka)
    await collector.start()
    publisher = EventPublisher(infra.kafka, client_id="grid-crash-test")
    await publisher.start()
    harness = Harness(None, city, publisher, collector, None, "")
    g = harness.grid(0)
    a_id, _, _ = staff_ids_for_grid(g)
    env = harness.received(g)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(await start_grid(infra, db_name, group, CIVICGRID_CRASH_AT=CRASH_AFTER_ASSIGNMENT))
        await harness.publish(env)
        assert await asyncio.to_thread(procs[0].wait, 60) == 137, "grid should have died at the crash point"
        stored = await db["requests"].find_one({"_id": env.subject})
        assert stored is not None and stored["assignee_id"] == a_id and stored.get(CAUSED), \
            "the assignment and the events it causes were stored before the crash"
        await asyncio.sleep(1.0)
        assert collector.of(env.subject) == [], "nothing was published before the crash"

        procs.append(await start_grid(infra, db_name, group))
        await collector.wait_for(env.subject, "civicgrid.request.assigned", timeout=60)
        await asyncio.sleep(2.0)  # anything more the redelivery would publish
        assigned = collector.of(env.subject, "civicgrid.request.assigned")
        assert len(assigned) == 1 and assigned[0].data.assignee_id == a_id
        staff = await db["staff"].find_one({"_id": a_id})
        assert staff["load"] == 1 and staff["holding"] == [env.subject]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                await asyncio.to_thread(p.wait, 30)
        await publisher.stop()
        await collector.stop()
        await drop_quietly(mongo, db_name)
