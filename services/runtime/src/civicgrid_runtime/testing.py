"""Test support shared by every service's suite: find the real infrastructure, fail loudly under CI.

Order: ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URL`` from the environment (``make test`` exports the
local processes it started), then a Docker engine via testcontainers (Kafka in KRaft mode, the
official MongoDB image), then the project's local processes (``deploy/local/infra.py up``).
Under ``CI=true`` a missing piece is a failure with a clear message, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient


@dataclass(frozen=True)
class Infrastructure:
    kafka: str
    mongodb: str
    origin: str  # "environment", "docker", "local processes"


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "deploy" / "local" / "infra.py").exists():
            return p
    raise RuntimeError("cannot find the repository root (deploy/local/infra.py)")


def _docker_available() -> bool:
    sock = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if sock.startswith("unix://"):
        path = sock.removeprefix("unix://")
        if not os.path.exists(path):
            return False
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(path)
            return True
        except OSError:
            return False
    return True


def _from_docker() -> Infrastructure:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    kafka.start()
    mongo = MongoDbContainer("mongo:8.0")
    mongo.start()
    return Infrastructure(kafka.get_bootstrap_server(), mongo.get_connection_url(), "docker")


def resolve_infrastructure() -> Infrastructure:
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    if kafka and mongo:
        infra = Infrastructure(kafka, mongo, "environment")
    elif _docker_available():
        infra = _from_docker()
    else:
        root = _repo_root()
        proc = subprocess.run([sys.executable, str(root / "deploy" / "local" / "infra.py"), "up"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"could not start local Kafka and store:\n{proc.stdout}\n{proc.stderr}")
        state = Path(os.environ.get("CIVICGRID_STATE_DIR", root / ".run"))
        env = dict(line.split("=", 1) for line in (state / "infra.env").read_text().split())
        infra = Infrastructure(env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGODB_URL"], "local processes")
    infra = check(infra)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["MONGODB_URL"] = infra.kafka, infra.mongodb
    return infra


def without_retryable_writes(url: str) -> str:
    """``url`` saying ``retryWrites=false`` (what the embedded store needs; the code never switches
    retryable writes off, so on MongoDB they stay on)."""
    if "retrywrites=" in url.lower():
        return url
    return url + ("&" if "?" in url else ("?" if url.endswith("/") else "/?")) + "retryWrites=false"


def check(infra: Infrastructure) -> Infrastructure:
    """Prove both are real and reachable; raise with a clear message otherwise. Returns them, the
    store's address saying ``retryWrites=false`` when it is the embedded store (FerretDB)."""
    client = MongoClient(infra.mongodb, serverSelectionTimeoutMS=5000)
    try:
        build = client.admin.command("buildInfo")
        client.admin.command("ping")
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"MongoDB-protocol store at {infra.mongodb} is not reachable: {exc}") from exc
    finally:
        client.close()

    async def probe() -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka, request_timeout_ms=5000)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"Kafka broker at {infra.kafka} is not reachable: {exc}") from exc
    from civicgrid_runtime.bus import ensure_topics

    asyncio.run(ensure_topics(infra.kafka))  # the registry's topics exist before any test reads them
    banner = (f"civicgrid tests: REAL Kafka broker at {infra.kafka}, REAL MongoDB-protocol store at {infra.mongodb} "
              f"({build.get('version', '?')}{', FerretDB' if 'ferretdb' in str(build).lower() else ''}) "
              f"from {infra.origin}")
    print(banner, file=sys.stderr)
    os.environ["CIVICGRID_TEST_INFRA_BANNER"] = banner
    if "ferretdb" in str(build).lower():
        return Infrastructure(infra.kafka, without_retryable_writes(infra.mongodb), infra.origin)
    return infra


def unique(prefix: str) -> str:
    """A name no other test uses (databases, consumer groups)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def pytest_configure(config) -> None:  # pragma: no cover - pytest hook
    config.addinivalue_line("markers", "infra: needs the real Kafka broker and MongoDB-protocol store")


async def start_group_at_end(bootstrap_servers: str, group_id: str, topic_names: list[str]) -> None:
    """Commit the current end offsets for a new consumer group, so a test's consumer sees only
    what the test publishes, yet a restarted consumer resumes from its committed offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from civicgrid_runtime.bus import ensure_topics

    await ensure_topics(bootstrap_servers)  # a fresh broker: the registry's topics first
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topic_names for p in (consumer.partitions_for_topic(t) or ())]
        if not tps:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - first contact with the topic
            tps = [TopicPartition(t, p) for t in topic_names for p in (consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: off for tp, off in ends.items()})
    finally:
        await consumer.stop()


async def _partitions(consumer, topic: str) -> list:
    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - first contact with the topic
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in parts]


async def read_topic(bootstrap_servers: str, topic: str, *, timeout: float = 5.0, since: dict | None = None):
    """All records of a topic (from the start, or from ``since`` offsets) until idle for ``timeout``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        for tp in tps:
            if since and tp in since:
                consumer.seek(tp, since[tp])
            else:
                await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        out = []
        async def behind() -> bool:
            for tp in tps:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=int(timeout * 1000))
            if not batch:
                break
            for recs in batch.values():
                out.extend(recs)
        return out
    finally:
        await consumer.stop()


async def end_offsets(bootstrap_servers: str, topic: str) -> dict:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(await _partitions(consumer, topic))
    finally:
        await consumer.stop()


async def eventually(check, *, timeout: float = 20.0, interval: float = 0.1):
    """Poll the async ``check`` until it returns something truthy; fail after ``timeout`` seconds
    (a deadline for asynchronous effects, never a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


async def drop_quietly(client, name: str) -> None:
    """Remove a test database's collections. FerretDB v1 on SQLite can die (SIGBUS) when a whole
    database file is dropped under open connections; dropping its collections is safe."""
    db = client[name]
    for col in await db.list_collection_names():
        await db.drop_collection(col)
