"""Replay: rebuild every projection of audit from the Kafka topics into a fresh database, then
compare it with the live one.

Streams the topics with a group-less consumer (assign + seek: from the beginning, or from a moment
via ``offsets_for_times``) up to the end offsets taken at start, in batches, through the very same
``Projector.apply`` the live consumer uses (batched writes; never the whole history in memory).
Partitions with different numbers are applied concurrently; the topics of one partition number
(which share request ids) one after the other.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_audit.adapters.auditlog import CHECKPOINTS, HEADS, RECORDS, AuditLog, Signer
from civicgrid_audit.adapters.projection import COUNTERS, DEADLINES, REQUESTS, SERVICES, Projector
from civicgrid_audit.domain.calendar import WorkingCalendar
from civicgrid_contracts import Envelope, MalformedEvent
from civicgrid_runtime.bus import Delivery

DEADLINE_FIELDS = ("request_id", "clock", "department", "dispatch_id", "base_due", "active", "area_code", "level",
                   "seen", "period_hours", "business")


async def replay_topics(*, bootstrap: str, db: AsyncDatabase, topic_names: list[str], calendar: WorkingCalendar,
                        signing_key: str, from_time: datetime | None = None, batch: int = 5000,
                        on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    log = AuditLog(db, Signer(signing_key))
    projector = Projector(db, log, calendar)
    await projector.ensure_indexes()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
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
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if from_time is not None:
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
        t0 = time.perf_counter()
        if on_progress:
            on_progress(0, total)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch)
            groups: dict[int, list[list[Delivery]]] = defaultdict(list)
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
                    groups[tp.partition].append(ds)
                    done += len(ds)
                if recs and recs[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)

            async def run(chunks: list[list[Delivery]]) -> None:
                for ds in chunks:
                    await projector.apply(ds)

            await asyncio.gather(*(run(c) for c in groups.values()))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if on_progress:
                on_progress(done, total)
        elapsed = time.perf_counter() - t0
    finally:
        await consumer.stop()
    await log.checkpoint()
    return {"events": done, "malformed": malformed, "seconds": round(elapsed, 3),
            "events_per_second": round(done / elapsed, 1) if elapsed else None,
            "from": from_time.isoformat() if from_time else None, "database": db.name}


# ---------------------------------------------------------------------------- comparison


def _norm_counter(doc: dict[str, Any]) -> dict[str, Any]:
    return {"dim": doc.get("dim"), "key": doc.get("key"), "day": doc.get("day"),
            "m": {k: v for k, v in (doc.get("m") or {}).items() if v}}


def _norm_request(doc: dict[str, Any]) -> dict[str, Any]:
    return {"timeline": doc.get("timeline"), "state": doc.get("state"),
            "_kc": {k: v for k, v in (doc.get("_kc") or {}).items() if v}}


def _norm_deadline(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc.get(k) for k in DEADLINE_FIELDS}
    if isinstance(out["base_due"], datetime):
        out["base_due"] = out["base_due"].astimezone(UTC).isoformat()
    return out


def _norm_record(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("log", "seq", "offset", "event_id", "raw", "leaf", "prev", "chain")}


def _norm_head(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("size", "last_offset", "chain", "frontier")}


def _norm_service(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("revision", "definition")}


COMPARED = {REQUESTS: _norm_request, COUNTERS: _norm_counter, DEADLINES: _norm_deadline, RECORDS: _norm_record,
            HEADS: _norm_head, SERVICES: _norm_service}


def _family(name: str) -> str:
    if name.startswith(REQUESTS + "_"):
        return REQUESTS
    if name.startswith(COUNTERS + "_p"):
        return COUNTERS
    return name


async def compare(live: AsyncDatabase, rebuilt: AsyncDatabase, *, show: int = 5) -> dict[str, Any]:
    """Stream both databases in ``_id`` order and compare every projection document."""
    report: dict[str, Any] = {"identical": True, "collections": {}}
    names = sorted(set(await live.list_collection_names()) | set(await rebuilt.list_collection_names()))
    for name in names:
        norm = COMPARED.get(_family(name))
        if norm is None:
            continue
        a = live[name].find({}).sort("_id", 1).batch_size(2000)
        b = rebuilt[name].find({}).sort("_id", 1).batch_size(2000)
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


__all__ = ["CHECKPOINTS", "compare", "replay_topics"]
