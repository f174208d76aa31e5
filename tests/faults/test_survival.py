"""Fault survival under a steady load, against the real broker and store (loopback only, bounded).

Each scenario runs the four services as separate processes, submits requests at a steady rate
through intake while faults are injected, then reconciles every accepted submission (HTTP 201)
against the audit trail and the topics, and prints the counts:

- lost: accepted requests that never reached supervision's timeline (must be 0);
- doubled: effects applied twice -- two different assignment events, offers or escalations for the
  same cause (must be 0); the same event re-published with the same id is *not* a double effect;
- caught up: every consumer group has committed up to the end of every topic it reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from civicgrid_contracts import topics
from civicgrid_runtime.bus import header
from civicgrid_runtime.testing import end_offsets, read_topic
from tests.e2e.conftest import token
from tests.support.platform import ROOT, Platform, daytime_visit

pytestmark = [pytest.mark.infra, pytest.mark.slow, pytest.mark.timeout(900)]
RATE = float(os.environ.get("FAULT_RATE", "5"))  # requests per second during a scenario
KILL_ROUNDS = int(os.environ.get("FAULT_KILL_ROUNDS", "2"))  # each round kills every service once
SERVICES = ("intake", "grid", "matching", "audit")
#: the topics each service's consumer group reads (see CONTRIBUTING.md, "Request lifecycle")
CONSUMES = {
    "intake": {topics.ASSIGNMENTS.name, topics.VOLUNTEERS.name, topics.SUPERVISION.name},
    "grid": {topics.REQUESTS.name, topics.CATALOGUE.name, topics.SUPERVISION.name, topics.VOLUNTEERS.name},
    "matching": {topics.ASSIGNMENTS.name, topics.CATALOGUE.name, topics.REQUESTS.name},
    "audit": {t.name for t in topics.EVENT_TOPICS},
}


def require_local_infrastructure() -> None:
    state = Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run"))
    if not (state / "kafka.pid").exists() or not (state / "store.pid").exists():
        pytest.fail("fault tests restart Kafka and the store: they need the project's local processes "
                    "(deploy/local/infra.py up, which `make test` starts)", pytrace=False)


def infra(cmd: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "deploy" / "local" / "infra.py"), cmd], check=True, timeout=180)


class SteadyLoad:
    """Residents submitting at a steady rate; remembers every request that got a 201."""

    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self.accepted: list[str] = []
        self.failed = Counter()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(f"{self.p.url('grid')}/v1/map/grids", params={"limit": 200},
                                 headers=token("admin"))
            r.raise_for_status()  # Platform.start waited until grid serves the demo map
            grids = r.json()["grids"]
            pending: set[asyncio.Task] = set()
            while not self.stop.is_set():
                t = asyncio.create_task(self.one(client, random.choice(grids)))
                pending.add(t)
                t.add_done_callback(pending.discard)
                await asyncio.sleep(1 / RATE)
            await asyncio.gather(*pending)

    async def one(self, client: httpx.AsyncClient, g: dict) -> None:
        min_lon, min_lat, max_lon, max_lat = g["bbox"]
        body = {"service_code": random.choice(["neighbour_dispute", "sanitation", "elderly_home_care"]),
                "channel": "app", "description": "fault-test request",
                "location": {"lat": random.uniform(min_lat, max_lat), "lon": random.uniform(min_lon, max_lon)}}
        if body["service_code"] == "sanitation":
            body["attributes"] = {"waste_type": "household"}
        if body["service_code"] == "elderly_home_care":  # a volunteer service: offers go out
            body["attributes"] = {"care_type": ["company"], "resident_age": 80}
            body["preferred_time"] = daytime_visit()
        try:
            r = await client.post(f"{self.p.url('intake')}/api/v1/requests", json=body)
        except httpx.HTTPError as exc:
            self.failed[type(exc).__name__] += 1  # not accepted: the resident was told so
            return
        if r.status_code == 201:
            self.accepted.append(r.json()["request_id"])
        else:
            self.failed[r.status_code] += 1


async def reconcile(p: Platform, accepted: list[str], *, timeout: float = 480) -> dict:
    """Wait until supervision saw every accepted request, then count losses and doubles."""
    groups = {svc: p.group(svc) for svc in SERVICES}
    names = [t.name for t in topics.EVENT_TOPICS]
    deadline = time.monotonic() + timeout
    while True:
        caught = await caught_up(groups, names)
        if all(caught.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    missing = []
    async with httpx.AsyncClient(timeout=20) as client:
        sem = asyncio.Semaphore(16)

        async def audited(rid: str) -> None:
            async with sem:
                for _ in range(30):
                    r = await client.get(f"{p.url('audit')}/requests/{rid}/timeline", headers=token("auditor"))
                    if r.status_code == 200 and any(e["type"].endswith("request.received")
                                                     for e in r.json()["timeline"]):
                        return
                    await asyncio.sleep(1)
                missing.append(rid)

        await asyncio.gather(*(audited(r) for r in accepted))
    doubles = await double_effects(p, set(accepted))
    return {"accepted": len(accepted), "lost": len(missing), "missing": missing[:5], **doubles,
            "caught_up": caught}


async def caught_up(groups: dict[str, str], names: list[str]) -> dict[str, bool]:
    from aiokafka import AIOKafkaConsumer

    ends = {}
    for n in names:
        ends.update(await end_offsets(p_kafka(), n))
    out = {}
    for svc, group in groups.items():
        c = AIOKafkaConsumer(bootstrap_servers=p_kafka(), group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            ok = True
            for tp, end in ends.items():
                if tp.topic not in CONSUMES[svc]:
                    continue  # the platform pre-committed every topic; only those read can lag
                committed = await c.committed(tp)
                if committed is not None and committed < end:
                    ok = False
            out[svc] = ok
        finally:
            await c.stop()
    return out


_KAFKA: list[str] = []


def p_kafka() -> str:
    return _KAFKA[0]


async def double_effects(p: Platform, accepted: set[str]) -> dict:
    """Distinct event ids per effect: one assignment per cause, one offer per (request, volunteer),
    one escalation per escalation id."""
    assigned: dict[str, set[str]] = defaultdict(set)
    received: dict[str, set[str]] = defaultdict(set)
    merged: set[str] = set()
    for rec in await read_topic(p.kafka, topics.ASSIGNMENTS.name, timeout=2):
        rid = (rec.key or b"").decode()
        if rid in accepted and header(rec.headers, "ce_type") == "civicgrid.request.assigned":
            # a transfer or escalation legitimately causes a new assignment: key by cause
            assigned[f"{rid}|{header(rec.headers, 'ce_causationid')}"].add(header(rec.headers, "ce_id"))
    for rec in await read_topic(p.kafka, topics.REQUESTS.name, timeout=2):
        rid = (rec.key or b"").decode()
        if rid in accepted and header(rec.headers, "ce_type") == "civicgrid.request.received":
            received[rid].add(header(rec.headers, "ce_id"))
        if rid in accepted and header(rec.headers, "ce_type") == "civicgrid.request.merged":
            merged.add(rid)
    offers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rec in await read_topic(p.kafka, topics.VOLUNTEERS.name, timeout=2):
        rid = (rec.key or b"").decode()
        if rid in accepted and header(rec.headers, "ce_type") == "civicgrid.volunteer.offered":
            offers[(rid, json.loads(rec.value)["volunteer_id"])].add(header(rec.headers, "ce_id"))
    escalations: Counter[str] = Counter()
    ids_seen: set[str] = set()
    for rec in await read_topic(p.kafka, topics.SUPERVISION.name, timeout=2):
        eid = header(rec.headers, "ce_id")
        if (rec.key or b"").decode() in accepted and eid not in ids_seen:
            ids_seen.add(eid)
            escalations[json.loads(rec.value)["escalation_id"]] += 1
    return {
        "double_assignments": sum(1 for ids in assigned.values() if len(ids) > 1),
        "double_received": sum(1 for ids in received.values() if len(ids) > 1),
        "double_escalations": sum(1 for n in escalations.values() if n > 1),
        # one volunteer offered the same request twice under different event ids
        "double_offers": sum(1 for ids in offers.values() if len(ids) > 1),
        "offers": len(offers),
        "assigned_requests": len({k.split("|")[0] for k in assigned}),
        "merged": len(merged),
    }


def report(name: str, result: dict, extra: str = "") -> None:
    print(f"\n[fault:{name}] accepted={result['accepted']} lost={result['lost']} "
          f"double_assignments={result['double_assignments']} double_received={result['double_received']} "
          f"double_escalations={result['double_escalations']} double_offers={result['double_offers']} "
          f"offers={result['offers']} assigned={result['assigned_requests']} "
          f"caught_up={result['caught_up']} {extra}")


def assert_survived(result: dict) -> None:
    assert result["lost"] == 0, f"accepted requests missing from the audit trail: {result['missing']}"
    assert result["double_assignments"] == 0
    assert result["double_received"] == 0
    assert result["double_escalations"] == 0
    assert result["double_offers"] == 0
    assert all(result["caught_up"].values()), result["caught_up"]
    assert result["assigned_requests"] == result["accepted"] - result["merged"], \
        "every accepted request that is not a merged duplicate was assigned"


@pytest.fixture
def platform(infra):
    require_local_infrastructure()
    _KAFKA[:] = [infra.kafka]
    p = Platform(infra.kafka, infra.mongodb)
    try:
        p.start()
        yield p
    finally:
        p.stop()


async def run_with_load(p: Platform, faults, seconds: float) -> tuple[dict, SteadyLoad]:
    load = SteadyLoad(p)
    task = asyncio.create_task(load.run())
    await faults()
    await asyncio.sleep(seconds)
    load.stop.set()
    await task
    return await reconcile(p, load.accepted), load


async def test_sigkill_each_service_several_times(platform):
    kills = Counter()

    async def faults():
        for _ in range(KILL_ROUNDS):
            for svc in random.sample(SERVICES, len(SERVICES)):
                await asyncio.sleep(random.uniform(1.0, 3.0))
                platform.services[svc].kill(signal.SIGKILL)
                kills[svc] += 1
                await asyncio.to_thread(platform.services[svc].restart)

    result, load = await run_with_load(platform, faults, 5)
    report("sigkill", result, f"kills={dict(kills)} not_accepted={dict(load.failed)}")
    assert_survived(result)


@pytest.mark.parametrize("part", ["kafka", "store"])
async def test_infrastructure_stop_and_restart(platform, part):
    async def faults():
        await asyncio.sleep(3)
        await asyncio.to_thread(infra, f"restart-{part}")

    result, load = await run_with_load(platform, faults, 8)
    report(f"{part}-restart", result, f"not_accepted={dict(load.failed)}")
    assert_survived(result)


@pytest.mark.parametrize("svc", ["grid", "audit"])
async def test_two_replicas_one_killed_the_other_takes_its_partitions(platform, svc):
    second = await asyncio.to_thread(platform.add_replica, svc)
    first = platform.services[svc]

    async def faults():
        await asyncio.sleep(4)
        second.kill(signal.SIGKILL)  # one replica dies; the other must take over its partitions

    result, load = await run_with_load(platform, faults, 10)
    report(f"replica-{svc}", result, f"survivor_alive={first.alive()} not_accepted={dict(load.failed)}")
    assert first.alive()
    assert_survived(result)
