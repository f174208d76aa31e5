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
        assert doc is not None, "the 201 meant stored"
        # the events wait in the request's own outbox (the runtime's protocol), flagged for the sweep
        assert doc["_outbox_pending"] is True and len(doc["_outbox"]) == 1
        assert await _received(infra.kafka, rid, since) == []  # nothing was published

        env.pop("CIVICGRID_CRASH_AT")
        proc = _start(env, log)
        await _ready(base, proc)

        async def published_and_settled():
            d = await mongo[db_name]["requests"].find_one({"_id": rid})
            return not d.get("_outbox_pending") and not d.get("_outbox")

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


@pytest.mark.slow
async def test_crash_between_a_duplicates_insert_and_its_link(infra, mongo, tmp_path):
    """The duplicate is stored, the process dies before the request it follows lists it: after a
    restart the relay's recovery links it and its events are published exactly once."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    db_name = unique("intake_crash_link")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka, "MONGODB_URL": infra.mongodb,
           "INTAKE_DATABASE": db_name, "INTAKE_CONSUMER_GROUP": unique("intake_crash"), "INTAKE_HTTP_PORT": str(port),
           "INTAKE_OUTBOX_SWEEP_SECONDS": "0.5"}
    log = tmp_path / "intake.log"
    first = body()
    near = {**first, "location": {"lat": first["location"]["lat"] + 0.0001, "lon": first["location"]["lon"]}}
    proc = _start(env, log)
    try:
        await _ready(base, proc)
        async with httpx.AsyncClient(timeout=30) as c:
            parent = (await c.post(f"{base}/api/v1/requests", json=first)).json()["request_id"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]

        since = await end_offsets(infra.kafka, topics.REQUESTS.name)
        proc = _start({**env, "CIVICGRID_CRASH_AT": "intake.after_store_before_link"}, log)
        await _ready(base, proc)
        async with httpx.AsyncClient(timeout=30) as c:
            with pytest.raises(httpx.TransportError):  # died before answering
                await c.post(f"{base}/api/v1/requests", json=near)
        assert proc.wait(timeout=30) == 137, log.read_text()[-3000:]
        dup = await mongo[db_name]["requests"].find_one({"duplicate_of": parent})
        assert dup is not None and dup["_outbox_pending"] is True
        assert (await mongo[db_name]["requests"].find_one({"_id": parent}))["followers_ids"] == []

        proc = _start(env, log)
        await _ready(base, proc)

        async def linked_and_published():
            p = await mongo[db_name]["requests"].find_one({"_id": parent})
            d = await mongo[db_name]["requests"].find_one({"_id": dup["_id"]})
            return p["followers_ids"] == [dup["_id"]] and not d.get("_outbox_pending")

        await eventually(linked_and_published, timeout=30)
        recs = await read_topic(infra.kafka, topics.REQUESTS.name, timeout=1.0, since=since)
        types = sorted(dict(r.headers)["ce_type"].decode() for r in recs if r.key == dup["_id"].encode())
        assert types == ["civicgrid.request.merged", "civicgrid.request.received"]  # once each
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await mongo.drop_database(db_name)
