"""SIGKILL of the real service process between the batched store write and the publish: after a
restart the offer is published exactly once (same event id), the request is not matched twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from civicgrid_contracts import Envelope, topics
from civicgrid_runtime import EventPublisher
from civicgrid_runtime.testing import end_offsets, read_topic, start_group_at_end, unique

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import ANCHOR, requested, wait_for  # noqa: E402

from civicgrid_matching.adapters.documents import volunteer_doc  # noqa: E402
from civicgrid_matching.bootstrap import CONSUMED  # noqa: E402
from civicgrid_matching.domain.volunteer import Volunteer  # noqa: E402

pytestmark = [pytest.mark.infra, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("civicgrid-matching"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([CLI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            return (await c.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_sigkill_after_batch_insert_publishes_the_offer_once_after_restart(infra, mongo):
    db, group, port = unique("matching_crash"), unique("matching_crash"), free_port()
    await start_group_at_end(infra.kafka, group, list(CONSUMED))
    now = datetime.now(UTC)
    await mongo[db]["volunteers"].insert_one(volunteer_doc(Volunteer.register("k-1", {
        "name": "K", "community": "c-01", "lat": ANCHOR[0], "lon": ANCHOR[1], "skills": ["elderly_care_home"],
        "weekly_hours_cap": 20, "availability": [{"day": d, "start": "00:00", "end": "24:00"}
                                                 for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]},
        by="test", now=now)))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka, "MONGODB_URL": infra.mongodb,
           "MATCHING_DATABASE": db, "MATCHING_CONSUMER_GROUP": group, "MATCHING_HTTP_PORT": str(port),
           "MATCHING_LOG_LEVEL": "WARNING"}
    proc = start({**env, "CIVICGRID_CRASH_AT": "matching.after_batch_insert"})
    publisher = EventPublisher(infra.kafka)
    await publisher.start()
    client = AsyncMongoClient(infra.mongodb, tz_aware=True)
    try:
        await wait_for(lambda: ready(port), timeout=60, interval=0.3)
        await asyncio.sleep(1.0)  # let the consumer join its group
        since = await end_offsets(infra.kafka, topics.VOLUNTEERS.name)
        req: Envelope = requested()
        await publisher.publish(req)
        assert await asyncio.to_thread(proc.wait, 60) == 137  # died at the crash point
        doc = await client[db]["matches"].find_one({"_id": req.subject})
        assert doc is not None and doc["status"] == "open" and doc["version"] == 1
        assert await client[db]["_outbox_markers"].count_documents({}) == 0, "no marker: the redelivery is the outbox"

        async def offered():
            # only this service's offers: topics are shared, and other running matching services
            # (other tests' platforms) answer the same request from their own registries
            recs = await read_topic(infra.kafka, topics.VOLUNTEERS.name, since=since, timeout=0.5)
            envs = [Envelope.from_kafka(r.value, r.headers) for r in recs if r.key == req.subject.encode()]
            return [e for e in envs if getattr(e.data, "volunteer_id", None) == "k-1"]

        assert await offered() == []
        proc = start(env)
        recs = await wait_for(offered, timeout=60, interval=1.0)
        await asyncio.sleep(2.0)
        recs = await offered()
        ids = {e.id for e in recs}
        assert len(ids) == 1
        after = await client[db]["matches"].find_one({"_id": req.subject})
        assert after["version"] == 1 and after["offers"] == doc["offers"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)
        await publisher.stop()
        await client.drop_database(db)
        await client.close()
