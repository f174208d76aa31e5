"""Foundation benchmark: the shared runtime against raw clients, in one run, as ratios.

- raw aiokafka produce and consume of a typical event (RequestReceived, CloudEvents binary mode);
- the runtime's publish path (EventPublisher.publish_many: envelope -> headers + JSON -> producer);
- raw store bulk insert (insert_many) of the same documents;
- the runtime's consume-validate-persist path (EventConsumer: fetch -> CloudEvent decode -> pydantic
  validation -> idempotent bulk persist keyed by event id -> commit after success);
- a peer doing the same work in the same run: a FastStream 0.7 batch subscriber with its safest
  Kafka acknowledgement policy (``NACK_ON_ERROR``: commit after the handler succeeds, seek back and
  redeliver when it fails), the payload validated by FastStream into the same pydantic model and
  persisted with the same idempotent bulk insert.

Goals: consume-validate-persist >= 70% of raw store bulk throughput; publish >= 50% of raw produce;
civicgrid's consumer at least as fast as the FastStream peer (>= 1.0x) -- while it also dead-letters
bad events with their reason, retries with backoff and never commits past an unfinished event.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError
from rich.console import Console
from rich.table import Table

from civicgrid_contracts import Envelope, topics
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_runtime.bus import EventConsumer, EventPublisher, ensure_topics

N = int(os.environ.get("BENCH_EVENTS", "30000"))
KAFKA = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
MONGO = os.environ["MONGODB_URL"]
TOPIC = topics.REQUESTS.name


def make_events(n: int) -> list[Envelope]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        rid = str(uuid.uuid4())
        p = RequestReceived.starting_clocks(DEFAULT_CALENDAR,
            request_id=rid, service_code="sanitation", service_name="环境卫生 Sanitation", service_group="environment",
            handled_by=("grid",), time_limits=TimeLimits(response_hours=2, resolution_hours=48),
            location=Location(lat=39.9 + (i % 100) * 1e-4, lon=116.3 + (i % 77) * 1e-4, cell="8931aa42a2bffff"),
            description="楼道里堆放杂物，影响通行，请尽快清理。Rubbish in the stairwell blocks the way.",
            attributes={"floor": 3}, channel="app", reporter_id="c0ffee" * 10, received_at=now,
        )
        out.append(Envelope.wrap(p, source="/civicgrid/bench"))
    return out


async def raw_produce(records) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, compression_type="lz4",
                                linger_ms=2, max_batch_size=256 * 1024)
    await producer.start()
    t = time.perf_counter()
    futs = [await producer.send(TOPIC, value=v, key=k, headers=h) for k, v, h in records]
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t
    await producer.stop()
    return len(records) / dt


async def runtime_publish(events) -> float:
    pub = EventPublisher(KAFKA)
    await pub.start()
    t = time.perf_counter()
    for i in range(0, len(events), 1000):
        await pub.publish_many(events[i:i + 1000])
    dt = time.perf_counter() - t
    await pub.stop()
    return len(events) / dt


async def end_offsets() -> dict:
    from civicgrid_runtime.testing import end_offsets as ends

    return await ends(KAFKA, TOPIC)


async def raw_consume(start: dict, n: int) -> float:
    c = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False, max_poll_records=1000)
    await c.start()
    c.assign(list(start))
    for tp, off in start.items():
        c.seek(tp, off)
    got = 0
    t = time.perf_counter()
    while got < n:
        batch = await c.getmany(timeout_ms=1000, max_records=1000)
        got += sum(len(v) for v in batch.values())
    dt = time.perf_counter() - t
    await c.stop()
    return got / dt


async def raw_store(docs: list[dict]) -> float:
    client = AsyncMongoClient(MONGO)
    col = client["civicgrid_bench"]["raw"]
    await col.drop()
    t = time.perf_counter()
    for i in range(0, len(docs), 500):
        await col.insert_many([dict(d) for d in docs[i:i + 500]], ordered=False)
    dt = time.perf_counter() - t
    await client.drop_database("civicgrid_bench")
    await client.close()
    return len(docs) / dt


async def runtime_consume_persist(start: dict, n: int) -> float:
    client = AsyncMongoClient(MONGO)
    col = client["civicgrid_bench"]["events"]
    await col.drop()
    group = await seeded_group(start)  # the group starts exactly where the runtime-published events begin
    done = asyncio.Event()
    count = 0

    async def persist(batch) -> None:
        nonlocal count
        await idempotent_insert(col, [{"_id": d.envelope.id, **d.envelope.to_document()} for d in batch])
        count += len(batch)
        if count >= n:
            done.set()

    pub = EventPublisher(KAFKA)
    await pub.start()
    consumer = EventConsumer(bootstrap_servers=KAFKA, group_id=group, topic_names=[TOPIC], handler=persist,
                             publisher=pub, max_batch=500, merge_partitions=True)  # as the services consume
    t = time.perf_counter()
    await consumer.start()
    await asyncio.wait_for(done.wait(), timeout=600)
    dt = time.perf_counter() - t
    await consumer.stop()
    await pub.stop()
    await client.drop_database("civicgrid_bench")
    await client.close()
    return count / dt


async def seeded_group(start: dict) -> str:
    """A new consumer group whose committed offsets are exactly ``start``."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    seed = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    await seed.start()
    seed.assign(list(start))
    await seed.commit(dict(start))
    await seed.stop()
    return group


async def idempotent_insert(col, docs: list[dict]) -> None:
    """Insert keyed by event id; a redelivered event is a duplicate key and ignored."""
    try:
        await col.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e["code"] != 11000 for e in exc.details["writeErrors"]):
            raise


async def faststream_consume_persist(start: dict, n: int) -> float:
    """The peer: FastStream's Kafka batch subscriber, typed payloads, safest ack policy."""
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker
    from faststream.kafka.annotations import KafkaMessage

    client = AsyncMongoClient(MONGO)
    col = client["civicgrid_bench"]["faststream"]
    await col.drop()
    group = await seeded_group(start)
    done = asyncio.Event()
    count = 0
    broker = KafkaBroker(KAFKA, logger=None)

    @broker.subscriber(TOPIC, group_id=group, batch=True, max_records=500, auto_offset_reset="earliest",
                       ack_policy=AckPolicy.NACK_ON_ERROR)
    async def persist(events: list[RequestReceived], message: KafkaMessage) -> None:
        nonlocal count
        docs = [{"_id": h["ce_id"], "id": h["ce_id"], "source": h["ce_source"], "type": h["ce_type"],
                 "time": h["ce_time"], "subject": h["ce_subject"], "correlationid": h["ce_correlationid"],
                 "causationid": h.get("ce_causationid"), "schemaversion": int(h["ce_schemaversion"]),
                 "data": e.model_dump(mode="json")}
                for e, h in zip(events, message.batch_headers, strict=True)]
        await idempotent_insert(col, docs)
        count += len(docs)
        if count >= n:
            done.set()

    t = time.perf_counter()
    await broker.start()
    await asyncio.wait_for(done.wait(), timeout=600)
    dt = time.perf_counter() - t
    await broker.stop()
    await client.drop_database("civicgrid_bench")
    await client.close()
    return count / dt


async def main() -> None:
    await ensure_topics(KAFKA)
    console = Console()
    console.print(f"[bold]foundation benchmark[/bold]: {N} RequestReceived events, Kafka {KAFKA}, store {MONGO}")
    events = make_events(N)
    records = [e.to_kafka() for e in events]
    docs = [{"_id": e.id, **e.to_document()} for e in events]

    raw_start = await end_offsets()
    produce = await raw_produce(records)
    consume = await raw_consume(raw_start, N)
    rt_start = await end_offsets()
    publish = await runtime_publish(make_events(N))
    # the same events, each read by a new group; the raw store baseline and the two consumers take
    # turns three times and the best of each counts, so that a noisy moment on a shared machine
    # decides neither a ratio nor its baseline
    store, persist, peer = 0.0, 0.0, 0.0
    for _ in range(3):
        store = max(store, await raw_store(docs))
        persist = max(persist, await runtime_consume_persist(rt_start, N))
        peer = max(peer, await faststream_consume_persist(rt_start, N))

    table = Table(title="foundation: runtime vs raw clients (same run)")
    for col in ("path", "events/s", "baseline", "ratio", "goal"):
        table.add_column(col)
    table.add_row("raw aiokafka produce", f"{produce:,.0f}", "", "", "")
    table.add_row("raw aiokafka consume", f"{consume:,.0f}", "", "", "")
    table.add_row("raw store bulk insert", f"{store:,.0f}", "", "", "")
    table.add_row("runtime publish", f"{publish:,.0f}", "raw produce", f"{publish / produce:.0%}", ">= 50%")
    table.add_row("runtime consume-validate-persist", f"{persist:,.0f}", "raw store bulk", f"{persist / store:.0%}",
                  ">= 70%")
    table.add_row("FastStream 0.7 consume-validate-persist (peer)", f"{peer:,.0f}", "", "", "")
    table.add_row("runtime consume-validate-persist", f"{persist:,.0f}", "FastStream peer", f"{persist / peer:.2f}x",
                  ">= 1.0x")
    console.print(table)
    print(f"RESULT foundation publish_ratio={publish / produce:.2f} persist_ratio={persist / store:.2f} "
          f"peer_ratio={persist / peer:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
