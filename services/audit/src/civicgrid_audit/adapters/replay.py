"""Replay: rebuild every projection of audit from the Kafka topics into a fresh database, then
compare it with the live one.

Streams the topics with a group-less consumer (assign + seek: from the beginning, or from a moment
via ``offsets_for_times``) up to the end offsets taken at start. The live path writes each request
once per batch it appears in; a rebuild does not have to: ``ReplayFold`` gathers each request's
entries in memory (up to ``max_requests`` requests, then it writes them and starts again, so the
history never has to fit in memory) and writes each request document, counter delta and running
clock once per flush, through the same pure fold as the live projection (``fold_document``), while
the log records are appended in large blocks in the background. Same documents as the live path,
a fraction of the store's work.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_audit.adapters.auditlog import AuditLog, Signer, delivery_key, log_name, record_id, records_of
from civicgrid_audit.adapters.documents import (
    CHECKPOINTS,
    COUNTERS,
    HEADS,
    RECORDS,
    REQUESTS,
    SERVICES,
    family,
    upcast,
)
from civicgrid_audit.adapters.projection import (
    CATALOGUE_TYPE,
    Projector,
    add_to_counters,
    fold_document,
    payloads_needed,
    payloads_of,
    read_requests,
    request_collection,
    stored_document,
    with_needed_payloads,
)
from civicgrid_audit.domain import kpi, timeline
from civicgrid_contracts import Envelope, MalformedEvent, topics
from civicgrid_contracts.topics import REQUEST_PARTITIONS
from civicgrid_runtime.bus import Delivery, kafka_client_options
from civicgrid_runtime.calendar import CalendarSource, FixedCalendar
from civicgrid_runtime.service import tune_collector
from civicgrid_runtime.store import BULK_CHUNK, bulk_in_chunks, find_by_ids


def default_workers() -> int:
    """Replay processes when none are asked for: one per CPU, at most one per partition number."""
    return min(os.cpu_count() or 1, REQUEST_PARTITIONS)


class TargetNotEmpty(ValueError):
    """Replay rebuilds into an empty database only (the CLI drops its target first)."""


class CounterWriter:
    """Adds a replay's counter sums to the counter documents. One writer for them all: every
    partition adds to the same counters, so the processes of a parallel replay hand their sums to
    their parent rather than race each other's inserts."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.counters = db[COUNTERS]
        self._written_before = False

    async def add(self, sums: dict[str, dict[str, int]]) -> None:
        existing = set(await find_by_ids(self.counters, list(sums), {"_id": 1})) if self._written_before else set()
        await add_to_counters(self.counters, sums, existing=existing)
        self._written_before = True


class ReplayFold:
    """The events of a replay, folded in memory and written in large batches (single writer)."""

    def __init__(self, db: AsyncDatabase, log: AuditLog, projector: Projector, calendar: CalendarSource, *,
                 max_requests: int = 20_000, log_block: int = 2_000, logs_in_flight: int = 4,
                 counter_sink: Callable[[dict[str, dict[str, int]]], Awaitable[None]] | None = None) -> None:
        self.db = db
        #: where the counter sums go (this process's writer, or a parallel replay's parent)
        self.counter_sink = counter_sink or CounterWriter(db).add
        self.log = log
        self.projector = projector
        self.calendar = calendar
        self.max_requests = max_requests
        self.log_block = log_block
        #: request id -> (event id -> timeline entry) not written yet
        self._requests: dict[str, dict[str, dict[str, Any]]] = {}
        self._flushed_before = False
        #: the flush writing the requests gathered before the current ones, if any
        self._flushing: asyncio.Task | None = None
        self._log_pending: dict[TopicPartition, tuple[list[Delivery], dict[tuple[str, int, int], dict[str, Any]]]] = {}
        self._log_tail: dict[TopicPartition, asyncio.Task] = {}
        self._logs_in_flight = asyncio.Semaphore(logs_in_flight)
        #: per topic-partition, the sequence number of its next log record: a replay appends every
        #: delivery, in offset order, to a log that starts empty, so an entry can name its record
        #: before the record is written (``_append_log`` checks it)
        self._next_seq: dict[TopicPartition, int] = defaultdict(int)
        self._logged_seq: dict[TopicPartition, int] = defaultdict(int)
        self._counters: dict[str, dict[str, int]] = defaultdict(dict)

    async def add(self, tp: TopicPartition, deliveries: list[Delivery]) -> None:
        """The next deliveries of one topic-partition, in offset order."""
        payloads = payloads_of(deliveries)
        log = log_name(tp.topic, tp.partition)
        records = {}
        for d in deliveries:
            records[delivery_key(d)] = record_id(log, self._next_seq[tp])
            self._next_seq[tp] += 1
        pending, pl = self._log_pending.setdefault(tp, ([], {}))
        pending.extend(deliveries)
        pl.update(payloads)
        if len(pending) >= self.log_block:
            self._append_log(tp)
        catalogue = [d for d in deliveries if d.envelope.type == CATALOGUE_TYPE]
        if catalogue:
            await self.projector.apply_catalogue(catalogue)
        for d in deliveries:
            if not topics.is_request_event(d.envelope.type):  # the catalogue's and calendar's: the log only
                continue
            entries = self._requests.setdefault(d.envelope.subject, {})
            if d.envelope.id not in entries:
                entries[d.envelope.id] = {**timeline.entry_from_envelope(
                    d.envelope, topic=d.topic, partition=d.partition, offset=d.offset, data=payloads[delivery_key(d)]),
                    "record": records[delivery_key(d)]}
        if len(self._requests) >= self.max_requests:
            await self.flush_requests()

    async def finish(self) -> None:
        for tp in list(self._log_pending):
            self._append_log(tp)
        await self.flush_requests()
        if self._flushing is not None:
            await self._flushing
        await self._flush_counters()
        if self._log_tail:
            await asyncio.gather(*self._log_tail.values())

    # ------------------------------------------------------------------ the log, in the background

    def _append_log(self, tp: TopicPartition) -> None:
        """Append a block of one partition's log after its previous block (one writer per log)."""
        ds, payloads = self._log_pending.pop(tp, ([], {}))
        if not ds:
            return
        before = self._log_tail.get(tp)
        first, self._logged_seq[tp] = self._logged_seq[tp], self._logged_seq[tp] + len(ds)

        async def append() -> None:
            if before is not None:
                await before
            async with self._logs_in_flight:
                appended: dict[tuple[str, int, int], str] = {}
                await self.log.append(ds, payloads=payloads, records=appended)
            log = log_name(tp.topic, tp.partition)
            if [appended.get(delivery_key(d)) for d in ds] != [record_id(log, first + i) for i in range(len(ds))]:
                raise RuntimeError(f"{log}: the log's records are not where the timeline entries say (a replay "
                                   "into a log that was not empty?)")

        self._log_tail[tp] = asyncio.create_task(append())

    async def _log_written(self) -> None:
        """Every delivery added so far in the log (the payloads of a timeline folded again are read there)."""
        for tp in list(self._log_pending):
            self._append_log(tp)
        await asyncio.gather(*list(self._log_tail.values()))

    # ------------------------------------------------------------------ requests, counters, clocks

    async def flush_requests(self) -> None:
        """Write the requests gathered so far, in the background: the events after them are read and
        folded meanwhile. A flush starts once the one before it is done (it may read back what that
        one wrote); a failed flush fails the next one, or ``finish``."""
        work, self._requests = self._requests, {}
        if work:
            self._flushing = asyncio.create_task(self._write_requests(work, after=self._flushing))
            await asyncio.sleep(0)  # let it start

    async def _write_requests(self, work: dict[str, dict[str, dict[str, Any]]], *, after: asyncio.Task | None,
                              chunk: int = BULK_CHUNK, in_flight: int = 2) -> None:
        """Fold ``work`` into request documents (their clocks with them) and write them a chunk at a
        time, the store writing one chunk while the next is folded."""
        if after is not None:
            await after
        # some of these may have been written by an earlier flush
        existing = await read_requests(self.db, list(work)) if self._flushed_before else {}
        self._flushed_before = True
        additions = {}
        for rid, entries in work.items():
            known = {e["id"] for e in existing[rid]["timeline"]} if rid in existing else set()
            additions[rid] = [e for eid, e in entries.items() if eid not in known]
        if any(payloads_needed(existing.get(rid), new) for rid, new in additions.items()):
            await self._log_written()
            existing.update(await with_needed_payloads(self.log, existing, additions))
        writes: list[asyncio.Task] = []
        ops: dict[str, list[InsertOne | ReplaceOne]] = defaultdict(list)
        pending = 0
        for rid, new in additions.items():
            doc = existing.get(rid)
            if not new:
                continue
            new_doc, delta = fold_document(rid, doc, new, self.calendar.calendar, kp={},
                                           repeat_hours=self.projector.repeat_hours)
            for cid, m in delta.items():
                kpi.add_into(self._counters[cid], m)
            if doc is None:
                ops[request_collection(rid)].append(InsertOne(stored_document(new_doc)))
            else:
                ops[request_collection(rid)].append(ReplaceOne({"_id": rid, "_v": doc["_v"]}, stored_document(new_doc)))
            pending += 1
            if pending >= chunk:
                if len(writes) >= in_flight:
                    await writes.pop(0)
                writes.append(asyncio.create_task(self._write_chunk(ops)))
                ops, pending = defaultdict(list), 0
                await asyncio.sleep(0)  # let it start
        if pending:
            writes.append(asyncio.create_task(self._write_chunk(ops)))
        await asyncio.gather(*writes)
        if len(self._counters) >= 4 * self.max_requests:
            await self._flush_counters()

    async def _write_chunk(self, ops: dict[str, list[InsertOne | ReplaceOne]]) -> None:
        for cname, cops in ops.items():
            await bulk_in_chunks(self.db[cname], cops)

    async def _flush_counters(self) -> None:
        sums, self._counters = {cid: m for cid, m in self._counters.items() if any(m.values())}, defaultdict(dict)
        if sums:
            await self.counter_sink(sums)


async def replay_topics(*, bootstrap: str, db: AsyncDatabase, topic_names: list[str], calendar: CalendarSource,
                        signing_key: str, from_time: datetime | None = None, batch: int = 5000,
                        max_requests: int = 20_000, on_progress: Callable[[int, int], None] | None = None,
                        workers: int = 1, mongodb_url: str | None = None,
                        bounds: dict[str, tuple[int, int]] | None = None,
                        repeat_hours: float | None = None) -> dict[str, Any]:
    """Rebuild into the empty ``db``. ``repeat_hours``: the live service's period between repeated
    escalations (``AUDIT_REPEAT_HOURS``), for the same clocks. ``bounds``: log name (``log_name(topic, partition)``) -> the
    offsets to replay, first and end (exclusive), instead of ``from_time`` to the end; a log not
    named is not replayed (what another trail holds, e.g. a live one to compare with). ``workers`` > 1 (with ``mongodb_url``): that many processes,
    each the single writer of its share of the partition numbers (the topics are co-partitioned,
    so a request's events, log and clocks all fall in one share); the counters, which every
    partition shares, are written by this process from the sums the workers send."""
    if await db[HEADS].find_one({}) is not None or await db[request_collection("")].find_one({}) is not None:
        raise TargetNotEmpty(f"database {db.name} is not empty: replay rebuilds into an empty one")
    log = AuditLog(db, Signer(signing_key))
    calendar = FixedCalendar(calendar.calendar)  # the calendar as it is now, the same in every process
    if workers > 1:
        if not mongodb_url:
            raise ValueError("a replay in several processes needs mongodb_url")
        res = await _replay_in_processes(bootstrap=bootstrap, mongodb_url=mongodb_url, db=db,
                                         topic_names=topic_names, calendar=calendar, signing_key=signing_key,
                                         from_time=from_time, batch=batch, max_requests=max_requests,
                                         bounds=bounds, on_progress=on_progress, workers=workers,
                                         repeat_hours=repeat_hours)
    else:
        res = await _replay_share(bootstrap=bootstrap, db=db, log=log, topic_names=topic_names, calendar=calendar,
                                  from_time=from_time, batch=batch, max_requests=max_requests, bounds=bounds,
                                  on_progress=on_progress, repeat_hours=repeat_hours)
    # A bulk load builds its secondary indexes once it is loaded (one sort per index) instead of
    # keeping them up to date through every insert: about a quarter of the store's work in a replay,
    # measured. Nothing the replay reads goes through them (it reads by _id). Timed with the rest.
    t0 = time.perf_counter()
    await Projector(db, log, calendar).ensure_indexes()
    await log.checkpoint()  # one signer for every log, after every writer wrote its heads
    done, elapsed = res["events"], res["seconds"] + time.perf_counter() - t0
    return {"events": done, "malformed": res["malformed"], "seconds": round(elapsed, 3),
            "events_per_second": round(done / elapsed, 1) if elapsed else None,
            "from": from_time.isoformat() if from_time else None, "database": db.name, "workers": max(1, workers)}


async def _replay_share(*, bootstrap: str, db: AsyncDatabase, log: AuditLog, topic_names: list[str],
                        calendar: CalendarSource, from_time: datetime | None, batch: int, max_requests: int,
                        bounds: dict[str, tuple[int, int]] | None = None,
                        on_progress: Callable[[int, int], None] | None = None, share: tuple[int, int] = (0, 1),
                        ready: Callable[[], None] | None = None,
                        counter_sink: Callable[[dict[str, dict[str, int]]], Awaitable[None]] | None = None,
                        repeat_hours: float | None = None) -> dict[str, Any]:
    """Replay the partitions whose number is ``share[0]`` modulo ``share[1]``; writes the log heads
    but signs no checkpoint. ``ready``: called (and awaited, if it blocks) once the consumer is set up,
    before the clock starts. ``counter_sink``: takes the counter sums instead of this process."""
    projector = Projector(db, log, calendar, repeat_hours=repeat_hours)
    fold = ReplayFold(db, log, projector, calendar, max_requests=max_requests, counter_sink=counter_sink)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                **kafka_client_options(),
                                max_poll_records=batch, fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = []
        for t in topic_names:
            parts = consumer.partitions_for_topic(t)
            if parts is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - first metadata fetch
                parts = consumer.partitions_for_topic(t) or set()
            tps += [TopicPartition(t, p) for p in sorted(parts) if p % share[1] == share[0]]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if bounds is not None:
            for tp in tps:
                first, end[tp] = bounds.get(log_name(tp.topic, tp.partition), (end[tp], end[tp]))
                consumer.seek(tp, first)
        elif from_time is not None:
            found = await consumer.offsets_for_times({tp: int(from_time.timestamp() * 1000) for tp in tps})
            for tp in tps:
                if found.get(tp) is None:
                    consumer.seek(tp, end[tp])
                else:
                    consumer.seek(tp, found[tp].offset)
        else:
            await consumer.seek_to_beginning(*tps)
        start = {tp: await consumer.position(tp) for tp in tps}
        total = sum(max(0, end[tp] - start[tp]) for tp in tps)
        done, malformed = 0, 0
        remaining = {tp for tp in tps if start[tp] < end[tp]}
        if ready:
            await asyncio.to_thread(ready)
        t0 = time.perf_counter()
        if on_progress:
            on_progress(0, total)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch)
            for tp, recs in fetched.items():
                ds = []
                for r in recs:
                    if r.offset >= end[tp]:
                        break
                    try:
                        ds.append(Delivery(Envelope.from_kafka(r.value, r.headers), r.topic, r.partition, r.offset))
                    except MalformedEvent:
                        malformed += 1
                if ds:
                    await fold.add(tp, ds)
                    done += len(ds)
                if recs and recs[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if on_progress:
                on_progress(done, total)
        await fold.finish()
        await log.flush_heads()
        elapsed = time.perf_counter() - t0
    finally:
        await consumer.stop()
    return {"events": done, "malformed": malformed, "seconds": elapsed}


def _replay_worker(share: tuple[int, int], kwargs: dict[str, Any], progress, barrier, results) -> None:
    """One process of a parallel replay (spawned: builds its own clients)."""
    from civicgrid_runtime.store import connect

    tune_collector()  # this process's whole life is the replay (the CLI sets it in its own)

    async def run() -> dict[str, Any]:
        client = connect(kwargs.pop("mongodb_url"), app_name=f"civicgrid-audit-replay-{share[0]}")
        try:
            db = client[kwargs.pop("database")]
            log = AuditLog(db, Signer(kwargs.pop("signing_key")))

            def report(done: int, total: int) -> None:
                progress[2 * share[0]], progress[2 * share[0] + 1] = done, total

            async def to_parent(sums: dict[str, dict[str, int]]) -> None:
                results.put(("counters", sums))  # before this worker's result, on the same queue

            return await _replay_share(db=db, log=log, share=share, on_progress=report, ready=barrier.wait,
                                       counter_sink=to_parent, **kwargs)
        finally:
            await client.close()

    try:
        results.put(("result", share[0], asyncio.run(run())))
    except BaseException as exc:
        barrier.abort()
        results.put(("result", share[0], {"error": repr(exc)}))
        raise


async def _replay_in_processes(*, workers: int, on_progress: Callable[[int, int], None] | None, db: AsyncDatabase,
                               **kwargs: Any) -> dict[str, Any]:
    """The workers replay; this process writes the counters they send (see ``CounterWriter``)."""
    import multiprocessing

    kwargs["database"] = db.name
    counters = CounterWriter(db)
    ctx = multiprocessing.get_context("spawn")  # no forked event loop, clients or locks
    progress = ctx.Array("q", 2 * workers, lock=False)
    barrier = ctx.Barrier(workers + 1, timeout=300)  # a worker dead before it was set up breaks it
    results = ctx.Queue()
    procs = [ctx.Process(target=_replay_worker, args=((i, workers), dict(kwargs), progress, barrier, results),
                         name=f"audit-replay-{i}", daemon=True) for i in range(workers)]
    for p in procs:
        p.start()
    try:
        try:
            await asyncio.to_thread(barrier.wait)  # every worker set up: the clock starts, as in one process
        except threading.BrokenBarrierError:
            pass  # a worker failed: its result says why
        t0 = time.perf_counter()
        got: dict[int, dict[str, Any]] = {}
        while len(got) < workers:
            try:
                message = await asyncio.to_thread(results.get, True, 0.25)
            except Exception:  # noqa: BLE001 - queue.Empty: report progress and wait on
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
            else:
                if message[0] == "counters":
                    await counters.add(message[1])
                else:
                    got[message[1]] = message[2]
            if on_progress:
                on_progress(sum(progress[0::2]), sum(progress[1::2]))
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.join(timeout=30)
    failed = [r["error"] for r in got.values() if "error" in r] + \
        [f"worker {i} ended without a result" for i in range(workers) if i not in got]
    if failed:
        raise RuntimeError(f"replay failed in {len(failed)} of {workers} processes: {failed}")
    return {"events": sum(r["events"] for r in got.values()), "malformed": sum(r["malformed"] for r in got.values()),
            "seconds": elapsed}


# ---------------------------------------------------------------------------- comparison


def _norm_counter(doc: dict[str, Any]) -> dict[str, Any]:
    return {"dim": doc.get("dim"), "key": doc.get("key"), "day": doc.get("day"),
            "m": {k: v for k, v in (doc.get("m") or {}).items() if v}}


#: what a timeline entry says, compared without where its payload is kept: in its log record (compared
#: with the log), or in the entry where the event was in the log already when it was folded
ENTRY_FIELDS = ("id", "type", "time", "who", "service", "topic", "partition", "offset")


def _norm_request(doc: dict[str, Any]) -> dict[str, Any]:
    doc = upcast(REQUESTS, doc)
    return {"timeline": [{k: e.get(k) for k in ENTRY_FIELDS} for e in doc.get("timeline") or []],
            "state": doc.get("state"), "clocks": doc.get("clocks"),
            "kpi_contribution": {k: v for k, v in kpi.expanded(doc.get("kpi_contribution") or []).items() if v}}


def _norm_record(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("log", "seq", "offset", "event_id", "raw", "leaf", "prev", "chain")}


def _norm_head(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("size", "last_offset", "chain", "frontier")}


def _norm_service(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("revision", "definition")}


COMPARED = {REQUESTS: _norm_request, COUNTERS: _norm_counter, RECORDS: _norm_record,
            HEADS: _norm_head, SERVICES: _norm_service}


async def _documents(db: AsyncDatabase, name: str) -> AsyncIterator[dict[str, Any]]:
    """A collection's documents in ``_id`` order; the log's records one by one (``_id`` = ``log#seq``;
    a database of an older version may hold them in blocks); the counters without the month buckets
    an older version kept (nothing counts or reads them any more)."""
    cursor = db[name].find({}).sort("_id", 1)
    if name != RECORDS:
        async for doc in cursor.batch_size(2000):
            if family(name) == COUNTERS and kpi.is_month_bucket(upcast(name, dict(doc))["_id"]):
                continue
            yield doc
        return
    async for block in cursor.batch_size(32):
        for r in records_of(block):
            yield {"_id": record_id(r["log"], r["seq"] if isinstance(r["seq"], int) else -1), **r}


async def compare(live: AsyncDatabase, rebuilt: AsyncDatabase, *, show: int = 5) -> dict[str, Any]:
    """Stream both databases in ``_id`` order and compare every projection document."""
    report: dict[str, Any] = {"identical": True, "collections": {}}
    names = sorted(set(await live.list_collection_names()) | set(await rebuilt.list_collection_names()))
    for name in names:
        norm = COMPARED.get(family(name))
        if norm is None:
            continue
        a, b = _documents(live, name), _documents(rebuilt, name)
        stats = {"live": 0, "rebuilt": 0, "different": 0, "only_live": 0, "only_rebuilt": 0, "examples": []}
        x = await anext(a, None)
        y = await anext(b, None)
        while x is not None or y is not None:
            if y is None or (x is not None and x["_id"] < y["_id"]):
                stats["live"] += 1
                stats["only_live"] += 1
                if len(stats["examples"]) < show:
                    stats["examples"].append({"_id": x["_id"], "problem": "only in live"})
                x = await anext(a, None)
            elif x is None or y["_id"] < x["_id"]:
                stats["rebuilt"] += 1
                stats["only_rebuilt"] += 1
                if len(stats["examples"]) < show:
                    stats["examples"].append({"_id": y["_id"], "problem": "only in rebuilt"})
                y = await anext(b, None)
            else:
                stats["live"] += 1
                stats["rebuilt"] += 1
                if norm(x) != norm(y):
                    stats["different"] += 1
                    if len(stats["examples"]) < show:
                        stats["examples"].append({"_id": x["_id"], "problem": "different"})
                x, y = await anext(a, None), await anext(b, None)
        same = not (stats["different"] or stats["only_live"] or stats["only_rebuilt"])
        stats["identical"] = same
        report["identical"] = report["identical"] and same
        report["collections"][name] = stats
    return report


__all__ = ["CHECKPOINTS", "ReplayFold", "TargetNotEmpty", "compare", "replay_topics"]
