"""The shared runtime's delivery guarantees, against the REAL Kafka broker and store:
delivered twice -> applied once; SIGKILL between the write and the publish -> the downstream event
exists exactly once after restart; malformed and always-failing messages -> dead-letter topic with
the reason, and later messages on the same partition are still processed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from civicgrid_contracts import topics
from civicgrid_runtime import EventPublisher
from civicgrid_runtime.bus import header
from civicgrid_runtime.testing import (
    drop_quietly,
    end_offsets,
    eventually,
    read_topic,
    start_group_at_end,
    unique,
)
from tests.support.events import received

sys.path.insert(0, str(Path(__file__).parent))
from example_service import open_example  # noqa: E402

pytestmark = pytest.mark.infra
ASSIGNED = topics.ASSIGNMENTS.name


async def wait_for(predicate, timeout=30.0):
    return await eventually(predicate, timeout=timeout)


async def count_assigned(infra, rid: str, since) -> list:
    """RequestAssigned events our example service published for ``rid`` (other suites' grid
    consumers share the broker and may assign the same request on their own)."""
    recs = await read_topic(infra.kafka, ASSIGNED, since=since, timeout=1.0)
    return [r for r in recs if r.key == rid.encode() and header(r.headers, "ce_source") == "/civicgrid/example"]


async def test_delivered_twice_applied_once(infra, mongo):
    group, db = unique("g"), unique("example")
    await start_group_at_end(infra.kafka, group, [topics.REQUESTS.name])
    since = await end_offsets(infra.kafka, ASSIGNED)
    rt = await open_example(group, db)
    await rt.start()
    try:
        rid = f"req-{uuid.uuid4()}"
        env = received(rid)
        await rt.publisher.publish(env)
        await rt.publisher.publish(env)  # the same event again (an at-least-once redelivery)
        doc = await wait_for(lambda: rt.db["requests"].find_one({"_id": rid}))
        await asyncio.sleep(1.5)  # let the second copy arrive and be handled
        doc = await rt.db["requests"].find_one({"_id": rid})
        assert doc["applied_count"] == 1
        out = await wait_for(lambda: count_assigned(infra, rid, since))
        assert len({header(r.headers, "ce_id") for r in out}) == 1
    finally:
        await rt.stop()
        await drop_quietly(mongo, db)


async def test_sigkill_after_write_before_publish_gives_exactly_one_downstream_event(infra, mongo):
    group, db = unique("g"), unique("example")
    await start_group_at_end(infra.kafka, group, [topics.REQUESTS.name])
    since = await end_offsets(infra.kafka, ASSIGNED)
    env = dict(os.environ, EXAMPLE_GROUP=group, EXAMPLE_DB=db, CIVICGRID_LOG_LEVEL="WARNING")
    script = str(Path(__file__).parent / "example_service.py")

    crashing = subprocess.Popen([sys.executable, script], env={**env, "CIVICGRID_CRASH_AT": "example.after_write"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert crashing.stdout.readline().strip() == "READY"
        rid = f"req-{uuid.uuid4()}"
        pub = EventPublisher(infra.kafka)
        await pub.start()
        await pub.publish(received(rid))
        await pub.stop()
        code = await asyncio.to_thread(crashing.wait, 60)
        assert code == 137, "the worker should have died at the crash point"
    finally:
        if crashing.poll() is None:
            crashing.kill()
    stored = await mongo[db]["requests"].find_one({"_id": rid})
    assert stored is not None and stored["applied_count"] == 1, "the write happened before the crash"
    assert stored.get("_outbox_pending", 0) > 0, "the caused event is waiting in the document's outbox"
    assert await count_assigned(infra, rid, since) == [], "nothing was published before the crash"

    restarted = subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    try:
        assert restarted.stdout.readline().strip() == "READY"
        out = await wait_for(lambda: count_assigned(infra, rid, since))
        await asyncio.sleep(2.0)  # the redelivered RequestReceived is handled too; it must add nothing
        out = await count_assigned(infra, rid, since)
        assert len(out) == 1, f"expected exactly one RequestAssigned, got {len(out)}"
        stored = await mongo[db]["requests"].find_one({"_id": rid})
        assert stored["applied_count"] == 1 and not stored.get("_outbox_pending")
    finally:
        restarted.terminate()
        restarted.wait(30)
        await drop_quietly(mongo, db)


async def test_malformed_and_failing_messages_are_dead_lettered_and_do_not_block(infra, mongo):
    group, db = unique("g"), unique("example")
    await start_group_at_end(infra.kafka, group, [topics.REQUESTS.name])
    dlq = topics.dead_letter(group).name
    rt = await open_example(group, db)
    from civicgrid_runtime.bus import ensure_topics

    await ensure_topics(infra.kafka, [topics.dead_letter(group)])
    await rt.start()
    try:
        key = f"same-key-{uuid.uuid4()}"  # one key: all three land on the same partition, in order
        await rt.publisher.send_raw(topics.REQUESTS.name, key=key.encode(), value=b"\x00 not an event",
                                    headers=[("ce_type", b"civicgrid.request.received")])
        await rt.publisher.publish(received(key, description="always-fails"))
        good = received(key, description="fine")
        # a different event id for the same request: the handler applies it
        await rt.publisher.publish(good)
        doc = await wait_for(lambda: rt.db["requests"].find_one({"_id": key}), timeout=60)
        assert doc["applied_count"] == 1

        async def dead():
            recs = await read_topic(infra.kafka, dlq, timeout=1.0)
            return recs if len(recs) >= 2 else None

        recs = await wait_for(dead, timeout=60)
        reasons = [header(r.headers, "dlq_reason") for r in recs]
        assert any(r.startswith("malformed") and "ce_id" in r for r in reasons), reasons
        assert any("handler failed" in r and "always fails" in r for r in reasons), reasons
        for r in recs:
            assert header(r.headers, "dlq_topic") == topics.REQUESTS.name
            assert header(r.headers, "dlq_offset") is not None
    finally:
        await rt.stop()
        await drop_quietly(mongo, db)


async def test_merged_partitions_still_dead_letter_only_the_bad_message(infra, mongo):
    """With one handler call per topic (``merge_partitions``), a failing message in a merged batch
    sends the batch back through the per-partition path: the bad one is dead-lettered, every good
    one on every partition is applied once."""
    group, db = unique("g"), unique("example")
    await start_group_at_end(infra.kafka, group, [topics.REQUESTS.name])
    dlq = topics.dead_letter(group).name
    from civicgrid_runtime.bus import ensure_topics

    await ensure_topics(infra.kafka, [topics.dead_letter(group)])
    rt = await open_example(group, db, merge_partitions=True)
    await rt.start()
    try:
        keys = [f"merged-{i}-{uuid.uuid4().hex[:6]}" for i in range(24)]  # spread over the partitions
        await rt.publisher.publish_many([received(k) for k in keys[:12]] + [received(keys[12], "always-fails")]
                                        + [received(k) for k in keys[13:]])

        async def applied():
            docs = await rt.db["requests"].find({"_id": {"$in": keys}}).to_list(None)
            return docs if len(docs) == len(keys) - 1 else None

        docs = await wait_for(applied, timeout=90)
        assert all(d["applied_count"] == 1 for d in docs)

        async def dead():
            recs = [r for r in await read_topic(infra.kafka, dlq, timeout=1.0) if r.key == keys[12].encode()]
            return recs or None

        [rec] = await wait_for(dead, timeout=60)
        assert "always fails" in header(rec.headers, "dlq_reason")
    finally:
        await rt.stop()
        await drop_quietly(mongo, db)


async def test_fetches_wait_long_while_idle_and_briefly_while_events_flow(infra):
    """An idle consumer's fetches answer at the first byte or wait long on the broker; events switch
    them to the busy parameters (a few events per fetch, a short wait) and quiet switches them back.
    The parameters live in aiokafka's fetcher (private): this fails if an upgrade moves them."""
    from civicgrid_contracts.topics import TopicSpec
    from civicgrid_runtime.bus import EventConsumer, ensure_topics

    topic = unique("fetch-mode")
    await ensure_topics(infra.kafka, [TopicSpec(topic, "test", "fetch parameters test", partitions=3)])
    handled: list[str] = []
    seen_by_handler: set[tuple[bool, int, int]] = set()

    async def handler(batch):
        handled.extend(d.envelope.id for d in batch)
        f = consumer._consumer._fetcher  # the mode is set as a fetch returns, before its records are handled
        seen_by_handler.add((consumer.fetch_busy, f._fetch_min_bytes, f._fetch_max_wait_ms))

    publisher = EventPublisher(infra.kafka, client_id=unique("fetch-mode"))
    await publisher.start()
    consumer = EventConsumer(bootstrap_servers=infra.kafka, group_id=unique("g"), topic_names=[topic],
                             handler=handler, publisher=publisher, fetch_min_bytes=3000, fetch_max_wait_ms=10,
                             idle_fetch_max_wait_ms=500)
    await consumer.start()
    fetcher = consumer._consumer._fetcher
    try:
        await consumer.wait_assigned()
        await asyncio.sleep(0.5)
        assert not consumer.fetch_busy
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 500)
        events = [received(f"req-{uuid.uuid4()}") for _ in range(5)]
        await publisher.publish_many(events, topic=topic)

        async def all_handled():
            return len(handled) == 5

        async def quiet():
            return not consumer.fetch_busy

        await wait_for(all_handled)
        assert seen_by_handler == {(True, 3000, 10)}
        await wait_for(quiet, timeout=5)
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 500)
    finally:
        await consumer.stop()
        await publisher.stop()


async def test_merged_topics_hand_one_fetchs_events_of_every_topic_to_one_call(infra):
    """With ``merge_topics`` the handler gets a fetch's records of every topic together (each
    partition's in order), so a handler folding per key writes a key's events of several topics once;
    every event is handled once."""
    from civicgrid_contracts.topics import TopicSpec
    from civicgrid_runtime.bus import EventConsumer, ensure_topics

    first, second = unique("merge-a"), unique("merge-b")
    await ensure_topics(infra.kafka, [TopicSpec(t, "test", "merged topics test", partitions=3) for t in (first, second)])
    calls: list[list[tuple[str, str]]] = []

    async def handler(batch):
        calls.append([(d.topic, d.envelope.id) for d in batch])
        for tp in {(d.topic, d.partition) for d in batch}:
            offsets = [d.offset for d in batch if (d.topic, d.partition) == tp]
            assert offsets == sorted(offsets), "a partition's records in order"

    publisher = EventPublisher(infra.kafka, client_id=unique("merge"))
    await publisher.start()
    # a long fetch wait: both topics' events of one moment arrive in one fetch
    consumer = EventConsumer(bootstrap_servers=infra.kafka, group_id=unique("g"), topic_names=[first, second],
                             handler=handler, publisher=publisher, merge_topics=True, fetch_min_bytes=1_000_000,
                             fetch_max_wait_ms=1000, idle_fetch_max_wait_ms=1000)
    await consumer.start()
    try:
        await consumer.wait_assigned()
        await asyncio.sleep(0.5)
        # the first event after a quiet spell is fetched at once (and switches to the busy fetch)
        wake = received(f"req-{uuid.uuid4()}")
        await publisher.publish_many([wake], topic=first)
        a = [received(f"req-{uuid.uuid4()}") for _ in range(6)]
        b = [received(f"req-{uuid.uuid4()}") for _ in range(6)]
        await asyncio.gather(publisher.publish_many(a, topic=first), publisher.publish_many(b, topic=second))

        async def all_handled():
            return sum(len(c) for c in calls) >= 13

        await wait_for(all_handled)
        handled = [eid for c in calls for _, eid in c]
        assert sorted(handled) == sorted(e.id for e in [wake, *a, *b]), "each event once"
        assert any({t for t, _ in c} == {first, second} for c in calls), calls
    finally:
        await consumer.stop()
        await publisher.stop()
