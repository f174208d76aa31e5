"""Killed after the request was stored and before its event was published: after a restart the
event is published exactly once, and the 201 the resident got was never a lie."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from intake_test_helpers import body

from civicgrid_contracts import topics
from civicgrid_runtime.testing import end_offsets, eventually, read_topic, unique

ROOT = Path(__file__).resolve().parents[4]
CLI = Path(sys.executable).parent / "civicgrid-intake"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(CLI), "serve"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            cwd=ROOT)


async def _ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the service exited during start-up"
            try:
                if (await c.get(f"{base}/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("service not ready")


async def _received(kafka: str, rid: str, since) -> list[str]:
    recs = await read_topic(kafka, topics.REQUESTS.name, timeout=1.0, since=since)
    return [dict(r.headers)["ce_id"].decode() for r in recs
            if r.key == rid.encode() and dict(r.headers)["ce_type"] == b"civicgrid.request.received"]


@pytest.mark.slow
async def test_crash_after_store_before_publish(infra, mongo, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    db_name = unique("intake_crash")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka, "MONGODB_URL": infra.mongodb,
           "INTAKE_DATABASE": db_name, "INTAKE_CONSUMER_GROUP": unique("intake_crash"), "INTAKE_HTTP_PORT": str(port),
           "INTAKE_OUTBOX_SWEEP_SECONDS": "0.5", "CIVICGRID_CRASH_AT": "intake.after_store_before_publish"}
    log = tmp_path / "intake.log"
    proc = _start(env, log)
    try:
        await _ready(base, proc)
        since = await end_offsets(infra.kafka, topics.REQUESTS.name)
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(f"{base}/api/v1/requests", json=body())
        # the 201 arrived: the request is stored; the process then died before publishing
        assert r.status_code == 201, r.text
        created = r.json()
        rid = created["request_id"]
        assert proc.wait(timeout=30) == 137, log.read_text()
        assert "intake.after_store_before_publish" in log.read_text()
        doc = await mongo[db_name]["requests"].find_one({"_id": rid})
        marker = await mongo[db_name]["outbox_markers"].find_one({"requests.id": rid})
        assert doc is not None, "the 201 meant stored"
        # the events wait in the batch's marker, which names the document's token
        assert marker is not None and marker["events"]
        assert [e["_ob"] for e in marker["requests"] if e["id"] == rid] == [doc["_ob"]]
        assert await _received(infra.kafka, rid, since) == []  # nothing was published

        env.pop("CIVICGRID_CRASH_AT")
        proc = _start(env, log)
        await _ready(base, proc)

        async def published_and_settled():
            d = await mongo[db_name]["requests"].find_one({"_id": rid})
            marker = await mongo[db_name]["outbox_markers"].find_one({"requests.id": rid})
            return not d.get("_outbox_pending") and marker is None

        await eventually(published_and_settled, timeout=30)
        ids = await _received(infra.kafka, rid, since)
        assert len(ids) == 1, ids  # exactly once, counted by event id on the topic
        # and the resident's 201 holds: the request is there, readable with the token
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.get(f"{base}/api/v1/requests/{rid}", headers={"X-Request-Token": created["token"]})
        assert r.status_code == 200 and r.json()["status"] == "received"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await mongo.drop_database(db_name)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published = []

    async def publish_many(self, events) -> None:
        self.published += list(events)


@pytest.mark.infra
async def test_sweep_publishes_a_markers_events_only_for_the_document_that_names_its_token(infra, fresh_db):
    """An Idempotency-Key race can leave a marker whose document the other submission wrote."""
    from datetime import UTC, datetime, timedelta

    from civicgrid_contracts import Envelope
    from civicgrid_contracts.events.intake import RequestRated
    from civicgrid_intake.adapters.outbox import TOKEN, RequestRelay
    from civicgrid_runtime.store import outbox_entries

    def rated(rid: str) -> Envelope:
        return Envelope.wrap(RequestRated(request_id=rid, rating="satisfied", rated_at=datetime.now(UTC)),
                             source="/test")

    requests, markers = fresh_db["requests"], fresh_db["outbox_markers"]
    old = datetime.now(UTC) - timedelta(minutes=5)
    await requests.insert_many([{"_id": "mine", TOKEN: "t1"}, {"_id": "raced", TOKEN: "t-other"}])
    await markers.insert_many([
        {"_id": "mine", "at": old, TOKEN: "t1", "events": outbox_entries([rated("mine")])},
        {"_id": "raced", "at": old, TOKEN: "t2", "events": outbox_entries([rated("raced")])},
    ])
    publisher = RecordingPublisher()
    relay = RequestRelay(requests, markers, publisher)
    assert await relay.sweep() == 1
    assert [e.subject for e in publisher.published] == ["mine"]
    assert await markers.count_documents({}) == 0


@pytest.mark.infra
async def test_sweep_publishes_a_batch_markers_requests_whose_document_names_their_token(infra, fresh_db):
    """A batch marker after a crash: a request stored by this batch is published, one an
    Idempotency-Key race stored through another submission is not, and a batch never written is
    dropped once old enough; duplicate links left half-done are finished."""
    from datetime import UTC, datetime, timedelta

    from civicgrid_contracts import Envelope
    from civicgrid_contracts.events.intake import RequestRated
    from civicgrid_intake.adapters.outbox import TOKEN, RequestRelay, batch_marker
    from civicgrid_runtime.store import outbox_entries

    def rated(rid: str) -> dict:
        return outbox_entries([Envelope.wrap(RequestRated(request_id=rid, rating="satisfied",
                                                          rated_at=datetime.now(UTC)), source="/test")])

    requests, markers = fresh_db["requests"], fresh_db["outbox_markers"]
    old = datetime.now(UTC) - timedelta(minutes=5)
    await requests.insert_many([{"_id": "mine", TOKEN: "t1"}, {"_id": "raced", TOKEN: "t-other"},
                                {"_id": "follower", TOKEN: "t3"}])
    await markers.insert_many([
        batch_marker("b-1", at=old, requests=[("mine", "t1", None, rated("mine")),
                                              ("raced", "t2", None, rated("raced")),
                                              ("follower", "t3", "parent", rated("follower"))]),
        batch_marker("b-2", at=old, requests=[("never-written", "t4", None, rated("never-written"))]),
    ])
    publisher = RecordingPublisher()
    relay = RequestRelay(requests, markers, publisher)
    linked = []

    async def link(rid: str, parent: str) -> None:
        linked.append((rid, parent))

    relay.link_finisher = link
    assert await relay.sweep() == 2
    assert sorted(e.subject for e in publisher.published) == ["follower", "mine"]
    assert linked == [("follower", "parent")]
    assert await markers.count_documents({}) == 0
