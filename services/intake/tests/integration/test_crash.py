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
