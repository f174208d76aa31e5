"""One grid service per test module, on the REAL broker and store: a unique database and consumer
group, the street-size demo city and its roster, consumer offsets moved to the end of the topics
first (so events other suites left on the shared broker are not ours). It stops with its module:
a grid left running would assign the requests later suites publish and race their own events."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from civicgrid_contracts import Envelope, topics
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_grid.adapters.mapstore import MapRepository
from civicgrid_grid.adapters.repos import RosterRepository, StaffRepository
from civicgrid_grid.bootstrap import bootstrap
from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.demo.roster import build_roster
from civicgrid_grid.entrypoints.http import map_router, roster_router, work_router
from civicgrid_grid.settings import GridSettings
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.bus import EventPublisher, ensure_topics
from civicgrid_runtime.problems import install_problem_handlers
from civicgrid_runtime.testing import unique

TEST_LIMIT = 5
SOURCE = "/civicgrid/intake-test"


async def move_group_to_end(bootstrap_servers: str, group: str, names: list[str]) -> None:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in names for p in (c.partitions_for_topic(t) or ())]
        if not tps:
            for t in names:
                await c._client.force_metadata_update()
                tps += [TopicPartition(t, p) for p in (c.partitions_for_topic(t) or ())]
        c.assign(tps)
        await c.seek_to_end(*tps)
        await c.commit({tp: await c.position(tp) for tp in tps})
    finally:
        await c.stop()


class Collector:
    """Reads a topic (grid.assignments.v1 unless told) from its end (manual assignment, no group):
    every event grid publishes there during the test run."""

    def __init__(self, bootstrap_servers: str, topic: str = topics.ASSIGNMENTS.name) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
        self.topic = topic
        self.events: list[Envelope] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        name = self.topic
        tps = [TopicPartition(name, p) for p in self.consumer.partitions_for_topic(name)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for recs in batches.values():
                for r in recs:
                    self.events.append(Envelope.from_kafka(r.value, r.headers))

    async def stop(self) -> None:
        self._task.cancel()
        await self.consumer.stop()

    def of(self, rid: str, type_: str | None = None) -> list[Envelope]:
        return [e for e in self.events if e.subject == rid and (type_ is None or e.type == type_)]

    async def wait_for(self, rid: str, type_: str, count: int = 1, timeout: float = 90.0) -> list[Envelope]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(rid, type_)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {type_} for {rid} within {timeout}s; got {[e.type for e in self.of(rid)]}")


class Harness:
    def __init__(self, svc, city, publisher: EventPublisher, collector: Collector, http: httpx.AsyncClient,
                 secret: str) -> None:
        self.svc, self.city, self.publisher, self.collector, self.http = svc, city, publisher, collector, http
        self.secret = secret

    def token(self, sub: str, role: str, area: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(secret=self.secret, sub=sub, role=role, area=area)}"}

    def grid(self, i: int) -> str:
        return self.city.grids.codes[i]

    def point_in(self, grid: str) -> tuple[float, float]:
        b = next(x for x in self.city.buildings_of(grid, limit=1))
        return b["lat"], b["lon"]

    def received(self, grid: str | None = None, *, rid: str | None = None, location: Location | None = None,
                 **kw) -> Envelope:
        rid = rid or f"req-{uuid.uuid4().hex[:12]}"
        if location is None:
            lat, lon = self.point_in(grid)
            location = Location(lat=lat, lon=lon)
        payload = RequestReceived.starting_clocks(DEFAULT_CALENDAR,
            request_id=rid, service_code=kw.pop("service_code", "repair"), service_name="Repair",
            time_limits=TimeLimits(response_hours=2, resolution_hours=48, report_back_hours=24),
            location=location, description="test", channel="web", received_at=datetime.now(UTC), **kw)
        return Envelope.wrap(payload, source=SOURCE)

    async def publish(self, *envs: Envelope) -> None:
        await self.publisher.publish_many(list(envs))

    async def assigned(self, env: Envelope, timeout: float = 90.0) -> Envelope:
        return (await self.collector.wait_for(env.subject, "civicgrid.request.assigned", timeout=timeout))[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(infra):
    await ensure_topics(infra.kafka)
    group = unique("grid_it")
    settings = GridSettings(kafka_bootstrap_servers=infra.kafka, mongodb_url=infra.mongodb,
                            database=unique("grid_it"), consumer_group=group, outbox_sweep_seconds=0.5,
                            map_refresh_seconds=0.5, consumer_backoff_seconds=0.05)
    await move_group_to_end(infra.kafka, group, [t.name for t in topics.EVENT_TOPICS if t.owner != "grid"])
    svc = await bootstrap(settings, create_topics=False)
    city = generate("street", 3)
    await MapRepository(svc.runtime.db).save(city, source="test")
    roster = build_roster(city, load_limit=TEST_LIMIT)
    await StaffRepository(svc.runtime.db).upsert_many(roster["staff"])
    rr = RosterRepository(svc.runtime.db)
    for name in ("posts", "chain", "departments"):
        await rr.upsert(name, roster[name])
    await svc.refresh_map()
    collector = Collector(infra.kafka)
    await collector.start()
    await svc.runtime.start()
    for c in svc.runtime.consumers:
        await c.wait_assigned()
    publisher = EventPublisher(infra.kafka, client_id="grid-test")
    await publisher.start()
    app = FastAPI()
    app.state.service = svc
    app.state.runtime = svc.runtime
    app.state.auth_secret = settings.auth_secret.get_secret_value()
    install_problem_handlers(app)
    app.include_router(map_router)
    app.include_router(work_router)
    app.include_router(roster_router)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://grid")
    h = Harness(svc, svc.ctx.city, publisher, collector, http, settings.auth_secret.get_secret_value())
    try:
        yield h
    finally:
        await http.aclose()
        await publisher.stop()
        await collector.stop()
        await svc.runtime.stop()
        # drop the collections, not the database: FerretDB v1/SQLite deletes the database file under
        # its own open connections and can die with SIGBUS (seen here)
        from pymongo import AsyncMongoClient

        client = AsyncMongoClient(infra.mongodb)
        db = client[settings.database_name]
        for name in await db.list_collection_names():
            await db.drop_collection(name)
        await client.close()
