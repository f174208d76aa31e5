"""The event bus: topic set-up, a safe publisher and an at-least-once consumer with retries and a
dead-letter topic.

Why not FastStream's subscriber here: FastStream 0.7's Kafka ack policies are either at most once
(its default: acknowledge first), commit-even-on-error (ACK, REJECT_ON_ERROR) or redeliver-forever with no
backoff (NACK_ON_ERROR, where a poison message blocks its partition), and it has no retry topic or
dead-letter queue. civicgrid needs commit-after-success, bounded retries with backoff, a dead-letter
topic with the reason, unbounded patience for *infrastructure* outages (the store restarting must
not dead-letter good messages) and per-partition batches for throughput; this module does exactly
that on aiokafka, the client FastStream itself is built on.

Delivery guarantees:
- the producer is idempotent with ``acks=all``; ``publish`` returns only after the broker acked;
- a consumer commits a partition's offsets only after its handler succeeded for every message up
  to that offset (or the message went to the dead-letter topic, which is acked first);
- handlers must be idempotent: after a crash, the uncommitted tail is delivered again.

Flow: a fetch loop keeps up to two batches of records ahead of the handlers, decoded as they
arrive (while a handler awaits the store); with merged partitions one batch at a time goes to the
handler (per topic), otherwise each partition runs on its own, one batch at a time. Offsets are
committed by one background committer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from civicgrid_contracts import Envelope, MalformedEvent, topics
from civicgrid_runtime import tracing
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERED,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    HANDLER_FAILURES,
    HANDLER_SECONDS,
)

log = get_logger("civicgrid.bus")

#: Failures of the infrastructure itself: waiting (not dead-lettering) is the right answer.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure, AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError,
    KafkaConnectionError, asyncio.TimeoutError, ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """An outage or a momentarily busy store (FerretDB on SQLite answers a concurrent writer with
    ``database is locked (SQLITE_BUSY)`` instead of waiting; the write did not happen)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, OperationFailure):
        text = str(exc)
        return "SQLITE_BUSY" in text or "database is locked" in text
    return False


# ----------------------------------------------------------------------------------- topics


@functools.cache
def kafka_client_options() -> dict[str, Any]:
    """Security options of every Kafka client of this process (TLS, SASL/SCRAM): the platform-wide
    ``CIVICGRID_KAFKA_*`` settings, read once (``KafkaTransportSettings``)."""
    from civicgrid_runtime.settings import KafkaTransportSettings

    return KafkaTransportSettings().client_options()


async def ensure_topics(bootstrap_servers: str, specs: Iterable[topics.TopicSpec] = topics.ALL_TOPICS, *,
                        replication_factor: int = 1) -> None:
    """Create the registry's topics that do not exist yet (idempotent; safe from every service)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000,
                                **kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication_factor, topic_configs=dict(s.config))
            for s in specs if s.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another service created it at the same moment
            # wait until metadata shows them, so consumers do not start on a missing topic
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if {t.name for t in new} <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


# ----------------------------------------------------------------------------------- publisher


class EventPublisher:
    """Publishes envelopes to the topic the registry assigns to their type."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "civicgrid", linger_ms: int = 0,
                 compression: str | None = "lz4") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=compression,
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=30000,
            **kafka_client_options(),
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False

    async def publish(self, envelope: Envelope, *, topic: str | None = None) -> None:
        await self.publish_many([envelope], topic=topic)

    async def publish_many(self, envelopes: Sequence[Envelope], *, topic: str | None = None) -> None:
        """Send all, then wait for every acknowledgement (batched by the producer); each event's
        ``publish`` span lasts until its acknowledgement."""
        futures, spans = [], []
        try:
            for env in envelopes:
                name = topic or topics.topic_of(env.type).name
                span, (key, value, headers) = tracing.start_publish(name, env)
                spans.append(span)
                futures.append((name, await self._producer.send(name, value=value, key=key, headers=headers)))
            for name, fut in futures:
                await fut
                EVENTS_PUBLISHED.labels(name).inc()
        except BaseException as exc:
            tracing.end_publish(spans, exc)
            raise
        tracing.end_publish(spans)

    async def send_raw(self, topic: str, *, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]]) -> None:
        await (await self._producer.send(topic, value=value, key=key, headers=headers))
        EVENTS_PUBLISHED.labels(topic).inc()

    async def ping(self) -> bool:
        try:
            await self._producer.client.fetch_all_metadata()
            return True
        except KafkaError:
            return False


# ----------------------------------------------------------------------------------- consumer


@dataclass(frozen=True, slots=True)
class Delivery:
    """One decoded event and where it came from (for position-based idempotency guards)."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int

    @property
    def position_key(self) -> str:
        """A document-key-safe name of this topic-partition (no '.' or '$')."""
        return f"{self.topic.replace('.', '_')}:{self.partition}"


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched record, decoded by the fetch loop as it arrived: the fetch loop runs while the
    handler awaits the store for the batch before, so decoding adds nothing to the handler's time."""

    record: ConsumerRecord
    delivery: Delivery | None  # None: malformed, for the dead-letter topic with ``malformed``
    malformed: str = ""

    @property
    def offset(self) -> int:
        return self.record.offset

    @classmethod
    def decode(cls, rec: ConsumerRecord) -> Fetched:
        try:
            env = Envelope.from_kafka(rec.value, rec.headers)
        except MalformedEvent as exc:
            return cls(rec, None, str(exc))
        return cls(rec, Delivery(env, rec.topic, rec.partition, rec.offset))


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


def per_event(handler: Callable[[Delivery], Awaitable[None]]) -> BatchHandler:
    """Adapt a one-event handler to the batch interface."""

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            await handler(d)

    return handle


class EventConsumer:
    """Consumes topics for one consumer group; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        topic_names: Sequence[str],
        handler: BatchHandler,
        publisher: EventPublisher,
        max_batch: int = 500,
        max_attempts: int = 5,
        backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 5.0,
        instance_id: str | None = None,
        auto_offset_reset: str = "earliest",
        transient: Callable[[BaseException], bool] = is_transient,
        merge_partitions: bool = False,
        merge_topics: bool = False,
        commit_interval_seconds: float = 0.1,
        fetch_max_wait_ms: int = 10,
        fetch_min_bytes: int = 3000,
        idle_fetch_max_wait_ms: int = 500,
    ) -> None:
        self.group_id = group_id
        #: hand the handler one batch per *topic* (every partition's records, each partition's in
        #: order) instead of one per partition: fewer, larger store round trips for handlers that
        #: work per request and do not care which partition a delivery came from
        self._merge = merge_partitions or merge_topics
        #: and one per *fetch*, every topic's records together: a handler that folds per request
        #: writes a request's events of several topics (received, assigned, ...) once
        self._merge_topics = merge_topics
        self.topic_names = list(topic_names)
        self._handler = handler
        self._publisher = publisher
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._transient = transient
        self._dlq = topics.dead_letter(group_id).name
        self._consumer = AIOKafkaConsumer(
            **kafka_client_options(),
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            group_instance_id=instance_id or None,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            max_poll_records=max_batch,
            fetch_max_wait_ms=idle_fetch_max_wait_ms,
            fetch_min_bytes=1,
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
            max_poll_interval_ms=600000,
            # co-partitioned topics: the range assignor gives one member partition N of every
            # topic it reads, so all events of one request meet in one process
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        #: fetch parameters while events flow (wait a moment for a few of them per fetch) and while
        #: none come (answer at the first byte, else wait long): with the busy ones on idle topics
        #: every consumer sent a fetch each 10 ms, and the broker and the service decoded every
        #: empty answer -- a tenth of a core each for one idle service
        self._busy_fetch = (fetch_min_bytes, fetch_max_wait_ms)
        self._idle_fetch = (1, idle_fetch_max_wait_ms)
        self.fetch_busy = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._fetch_task: asyncio.Task | None = None
        #: records fetched ahead of the handler. aiokafka sends no fetch to a broker while any of its
        #: partitions still holds unconsumed records, so records that arrive while a batch is handled
        #: would otherwise wait for that batch to end before they are even fetched
        self._ahead: dict[TopicPartition, list[Fetched]] = {}
        self._ahead_count = 0
        self._ahead_limit = 2 * max_batch
        self._has_ahead = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._positions: dict[TopicPartition, int] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task | None = None
        self._commit_interval = commit_interval_seconds
        self._last_commit = 0.0
        #: set when pending offsets must go now (stop, partitions revoked), not after the interval
        self._commit_now = asyncio.Event()
        self.healthy = False

    # -- lifecycle

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(self.topic_names, listener=_DropFetchedOnRebalance(self))
        self._fetch_task = asyncio.create_task(self._fetch_ahead(), name=f"fetch:{self.group_id}")
        self._fetch_task.add_done_callback(self._fetch_ended)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.group_id}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, timeout=15)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._fetch_task:
            self._fetch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetch_task
        await self._consumer.stop()

    async def wait_assigned(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.group_id}: no partitions assigned after {timeout}s")
            await asyncio.sleep(0.05)
        for tp in self._consumer.assignment():  # resolve starting positions now, not at first fetch
            await self._consumer.position(tp)

    def lag(self) -> dict[str, int]:
        """Messages behind the high watermark per topic (from the last fetch and commit)."""
        out: dict[str, int] = {}
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None or tp not in self._positions:
                continue
            lag = max(0, hw - self._positions[tp])
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
            out[tp.topic] = out.get(tp.topic, 0) + lag
        return out

    # -- the loop

    def forget_fetched(self, revoked: Iterable[TopicPartition]) -> None:
        """Drop what was fetched ahead for partitions taken away in a rebalance: another member
        handles them now, and if they come back the fetcher starts again at the committed offset."""
        for tp in revoked:
            self._ahead_count -= len(self._ahead.pop(tp, ()))
        self._fetched_changed()

    def _fetched_changed(self) -> None:
        """Keep ``_has_ahead`` and ``_has_room`` true to the buffer."""
        if self._ahead:
            self._has_ahead.set()
        else:
            self._has_ahead.clear()
        if self._ahead_count >= self._ahead_limit:
            self._has_room.clear()
        else:
            self._has_room.set()

    async def _fetch_ahead(self) -> None:
        # nothing for longer than a busy fetch waits on the broker means quiet (not a fetch still waiting)
        quiet_ms = max(200, self._busy_fetch[1] + 100)
        while not self._stopping.is_set():
            await self._has_room.wait()
            try:
                batches = await self._consumer.getmany(timeout_ms=quiet_ms, max_records=self._max_batch)
                self.healthy = True
            except KafkaError as exc:
                self.healthy = False
                log.warning("fetch failed; retrying", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            self._fetch_mode(busy=bool(batches))
            # a fetch that straddled a rebalance may hold records of a partition revoked meanwhile
            assigned = self._consumer.assignment()
            for tp, recs in batches.items():
                if tp in assigned:
                    self._ahead.setdefault(tp, []).extend(map(Fetched.decode, recs))
                    self._ahead_count += len(recs)
            self._fetched_changed()

    def _fetch_mode(self, *, busy: bool) -> None:
        """Busy or idle fetch parameters for the fetches sent from now on (one already waiting on the
        broker keeps its own). aiokafka reads them from its fetcher for every request it builds and
        has no public way to change them (tests/runtime check the attributes still exist)."""
        if busy == self.fetch_busy:
            return
        fetcher = self._consumer._fetcher  # noqa: SLF001
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = self._busy_fetch if busy else self._idle_fetch  # noqa: SLF001
        self.fetch_busy = busy

    def _fetch_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.healthy = False
            log.error("fetching stopped", error=repr(task.exception()))

    @property
    def alive(self) -> bool:
        """False once its fetch or handling loop ended by itself (a bug): nothing more would be
        consumed, so the process should be restarted."""
        return self._stopping.is_set() or not any(t is not None and t.done() for t in (self._fetch_task, self._task))

    def _take_fetched(self, only: TopicPartition | None = None) -> dict[TopicPartition, list[Fetched]]:
        """Up to ``max_batch`` fetched records (of partition ``only``, if given), each partition's
        in order."""
        taken: dict[TopicPartition, list[Fetched]] = {}
        budget = self._max_batch
        for tp in [only] if only is not None else list(self._ahead):
            if budget <= 0:
                break
            recs = self._ahead[tp]
            taken[tp], rest = recs[:budget], recs[budget:]
            budget -= len(taken[tp])
            if rest:
                self._ahead[tp] = rest
            else:
                del self._ahead[tp]
        self._ahead_count -= self._max_batch - budget
        self._fetched_changed()
        return taken

    async def _run(self) -> None:
        try:
            if self._merge:
                await self._run_merged()
            else:
                await self._run_partitions()
        finally:
            await self.flush_commits()

    async def _run_merged(self) -> None:
        """One batch at a time, every partition's records of a topic in one handler call."""
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._has_ahead.wait(), timeout=0.2)
            except asyncio.TimeoutError:
                self.lag()
                continue
            batches = self._take_fetched()
            by_topic: dict[str, dict[TopicPartition, list[Fetched]]] = {}
            for tp, recs in batches.items():
                by_topic.setdefault("" if self._merge_topics else tp.topic, {})[tp] = recs
            await asyncio.gather(*(self._process_topic(parts) for parts in by_topic.values()))
            self._commit_later({tp: recs[-1].offset + 1 for tp, recs in batches.items()})

    async def _run_partitions(self) -> None:
        """Each partition on its own: its next batch starts as soon as its last one is handled,
        whatever the others do, so a slow partition holds no other and the store has work while
        the next batch is prepared. A partition is in one batch at a time: its records are still
        handled in order."""
        busy: dict[TopicPartition, asyncio.Task] = {}
        failed: list[BaseException] = []

        def ended(tp: TopicPartition, task: asyncio.Task) -> None:
            busy.pop(tp, None)
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())
            self._has_ahead.set()  # wakes the loop: this partition's next records may wait

        try:
            while not self._stopping.is_set():
                if failed:
                    raise failed[0]
                for tp in [tp for tp in self._ahead if tp not in busy]:
                    recs = self._take_fetched(only=tp)[tp]
                    busy[tp] = asyncio.create_task(self._handle_partition(tp, recs))
                    busy[tp].add_done_callback(lambda task, tp=tp: ended(tp, task))
                self._has_ahead.clear()
                if any(tp not in busy for tp in self._ahead):
                    continue
                try:
                    await asyncio.wait_for(self._has_ahead.wait(), timeout=0.2)
                except asyncio.TimeoutError:
                    self.lag()
        finally:
            if busy:
                await asyncio.gather(*busy.values(), return_exceptions=True)

    async def _handle_partition(self, tp: TopicPartition, records: list[Fetched]) -> None:
        await self._process_partition(tp, records)
        self._commit_later({tp: records[-1].offset + 1})

    def _commit_later(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit in the background (overlapping the next batches), one commit at a time, so a
        partition's committed offset only grows, and at most one per commit interval; what is
        handled meanwhile goes in the next one."""
        self._to_commit.update(offsets)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())

    async def _commit_pending(self) -> None:
        while self._to_commit:
            wait = self._last_commit + self._commit_interval - time.monotonic()
            if wait > 0 and not self._commit_now.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._commit_now.wait(), timeout=wait)
            offsets, self._to_commit = self._to_commit, {}
            self._last_commit = time.monotonic()
            await self._commit(offsets)
            self.lag()  # positions moved

    async def flush_commits(self) -> None:
        """Commit what is handled now, without waiting for the interval."""
        self._commit_now.set()
        try:
            while self._committer is not None and not self._committer.done():
                await self._committer
            if self._to_commit:
                await self._commit_pending()
        finally:
            self._commit_now.clear()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        while True:
            try:
                await self._consumer.commit(offsets)
                self._positions.update(offsets)
                return
            except CommitFailedError as exc:
                # the group rebalanced: these partitions now belong to someone else, who will
                # redeliver from the last commit; our handlers are idempotent, so nothing is lost
                log.warning("commit refused after rebalance", error=str(exc))
                return
            except KafkaError as exc:
                if self._stopping.is_set():
                    return
                log.warning("commit failed; retrying", error=str(exc))
                await asyncio.sleep(0.5)

    async def _process_topic(self, parts: dict[TopicPartition, list[Fetched]]) -> None:
        """One handler call for several partitions of a topic (of every topic, with ``merge_topics``);
        if it fails, each partition again on its own (and there one by one, then the dead-letter
        topic), as without merging."""
        if len(parts) == 1:
            [(tp, recs)] = parts.items()
            return await self._process_partition(tp, recs)
        deliveries = [f.delivery for recs in parts.values() for f in recs]
        if None in deliveries:
            return await self._each_partition(parts)  # the per-partition path dead-letters it
        started = time.perf_counter()
        topic = ",".join(sorted({d.topic for d in deliveries}))  # several, when topics are merged
        try:
            with tracing.handling(self.group_id, topic, deliveries):
                await self._call_with_patience(deliveries)
        except Exception as exc:  # noqa: BLE001 - retried partition by partition
            log.info("merged batch failed; retrying per partition", topic=topic, error=repr(exc))
            return await self._each_partition(parts)
        self._count_consumed(deliveries)
        HANDLER_SECONDS.labels(self.group_id, topic).observe(time.perf_counter() - started)

    async def _each_partition(self, parts: dict[TopicPartition, list[Fetched]]) -> None:
        for tp, recs in parts.items():
            await self._process_partition(tp, recs)

    async def _process_partition(self, tp: TopicPartition, fetched: list[Fetched]) -> None:
        deliveries: list[Delivery] = []
        for f in fetched:
            if f.delivery is None:
                await self._dead_letter(f.record, reason=f"malformed: {f.malformed}", attempts=0)
            else:
                deliveries.append(f.delivery)
        if not deliveries:
            return
        started = time.perf_counter()
        try:
            with tracing.handling(self.group_id, tp.topic, deliveries):
                await self._call_with_patience(deliveries)
        except Exception as exc:  # noqa: BLE001 - an application error somewhere in the batch
            HANDLER_FAILURES.labels(self.group_id, tp.topic, type(exc).__name__).inc()
            log.info("batch failed; retrying one by one", topic=tp.topic, partition=tp.partition, error=repr(exc))
            records_by_offset = {f.offset: f.record for f in fetched}
            for d in deliveries:
                await self._handle_one(d, records_by_offset=records_by_offset)
        else:
            self._count_consumed(deliveries)
        HANDLER_SECONDS.labels(self.group_id, tp.topic).observe(time.perf_counter() - started)

    def _count_consumed(self, deliveries: list[Delivery]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for d in deliveries:
            counts[d.topic, d.envelope.type] = counts.get((d.topic, d.envelope.type), 0) + 1
        for (topic, event_type), n in counts.items():
            EVENTS_CONSUMED.labels(self.group_id, topic, event_type).inc(n)

    async def _call_with_patience(self, batch: list[Delivery]) -> None:
        """Call the handler; wait out infrastructure outages (never dead-letter for them)."""
        delay = self._backoff
        while True:
            try:
                await self._handler(batch)
                return
            except Exception as exc:
                if not self._transient(exc) or self._stopping.is_set():
                    raise
                log.warning("infrastructure unavailable; waiting", error=repr(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def _handle_one(self, d: Delivery, *, records_by_offset: dict[int, ConsumerRecord]) -> None:
        last: BaseException | None = None
        for attempt in range(1, self._max_attempts + 1):
            try:
                with tracing.handling(self.group_id, d.topic, [d]):
                    try:
                        await self._call_with_patience([d])
                    except Exception as exc:
                        log.warning("handler failed", attempt=attempt, error=repr(exc), type=d.envelope.type)
                        raise
                EVENTS_CONSUMED.labels(self.group_id, d.topic, d.envelope.type).inc()
                return
            except Exception as exc:  # noqa: BLE001 - retried, then dead-lettered
                last = exc
                HANDLER_FAILURES.labels(self.group_id, d.topic, type(exc).__name__).inc()
            if attempt < self._max_attempts:
                delay = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
                await asyncio.sleep(delay * (0.5 + random.random()))
        await self._dead_letter(records_by_offset[d.offset], reason=f"handler failed: {last!r}",
                                attempts=self._max_attempts)

    async def _dead_letter(self, rec: ConsumerRecord, *, reason: str, attempts: int) -> None:
        headers = list(rec.headers or ()) + [
            ("dlq_reason", reason[:4000].encode()),
            ("dlq_group", self.group_id.encode()),
            ("dlq_topic", rec.topic.encode()),
            ("dlq_partition", str(rec.partition).encode()),
            ("dlq_offset", str(rec.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
        ]
        delay = self._backoff
        while True:  # the dead-letter write must succeed before we move past the message
            try:
                await self._publisher.send_raw(self._dlq, key=rec.key, value=rec.value, headers=headers)
                break
            except KafkaError as exc:
                log.warning("dead-letter publish failed; retrying", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
        DEAD_LETTERED.labels(self.group_id, rec.topic).inc()
        log.error("message dead-lettered", topic=rec.topic, partition=rec.partition, offset=rec.offset,
                  reason=reason, event_id=header(rec.headers or (), "ce_id"),
                  correlation_id=header(rec.headers or (), "ce_correlationid"))


class _DropFetchedOnRebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: EventConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._consumer.forget_fetched(revoked)
        # what was handled is committed before the partitions go, so their next owner starts there
        # (bounded: a broker that does not answer must not hold the rebalance up)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._consumer.flush_commits()), timeout=5)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


def header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None


Document = dict[str, Any]
