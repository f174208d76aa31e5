"""The supervision lists (``/supervision/overdue``, ``/supervision/escalated``) over a filled request
collection: N request documents of today's shape, built by the projection's own fold from a street
office's history (the synthetic workload's events, received 7 minutes apart up to now, with a
resident's description, attributes and a located address; events still in the future dropped), each
late clock escalated up the chain as the scanner would have done at its due time. Inserted straight
into a fresh database (the projection's documents, not its writes: filling is not what is measured),
then each list is timed as the API runs it.

    MONGODB_URL=... .venv/bin/python services/audit/bench/supervision_lists.py [--requests 2000 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_audit.adapters.projection import (
    ensure_request_indexes,
    fold_document,
    request_collection,
    stored_document,
)
from civicgrid_audit.adapters.queries import Queries
from civicgrid_audit.domain import clocks, timeline
from civicgrid_audit.workload import DISTRICT, request_events
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR, working_hours_between
from civicgrid_contracts.envelope import derived_event_id
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.values import Location
from civicgrid_runtime.calendar import FixedCalendar
from civicgrid_runtime.store import connect
from civicgrid_runtime.testing import drop_quietly

#: minutes between two requests of the history (about 200 a day: a busy street office)
SPACING_MINUTES = 7
DESCRIPTION = ("楼道灯坏了好几天，晚上老人上下楼很不方便，麻烦尽快派人来修一下。The stairwell light on the third floor "
               "has been out for days; elderly residents cannot see the steps at night.")
INSERT_BATCH = 500
#: the API's default page
LIMIT = 200


def _realistic(env: Envelope, i: int) -> Envelope:
    """The workload's RequestReceived with what a resident's request carries: a description, answers
    to the service's attributes and a located address."""
    if not env.type.endswith(".received"):
        return env
    data = env.data.model_copy(update={
        "description": DESCRIPTION, "attributes": {"floor": 3 + i % 9, "urgent": i % 5 == 0, "what": "stairwell light"},
        "location": Location(lat=39.92 + (i % 97) / 10_000, lon=116.44 + (i % 89) / 10_000,
                             building_id=env.data.location.building_id, address_text=f"朝阳区某街道{i % 40}号楼{1 + i % 6}单元"),
    })
    return env.model_copy(update={"data": data})


def _entry(env: Envelope, offset: int) -> dict[str, Any]:
    return timeline.entry_from_envelope(env, topic="bench", partition=0, offset=offset)


def _escalation(rid: str, state_clock: dict[str, Any], at: datetime) -> Envelope:
    """What the scanner publishes for a due step (adapters/scanner.py ``_escalation``)."""
    eid = f"{state_clock['id']}|{state_clock['step']}"
    payload = RequestEscalated(
        request_id=rid, escalation_id=eid, clock=state_clock["clock"], step=state_clock["step"],
        from_level=state_clock["level"], to_level=timeline.next_level(state_clock["level"]),
        due_at=state_clock["due_at"], escalated_at=at, department=state_clock.get("department"),
        overdue_hours=round(working_hours_between(state_clock["base_due"], at, clocks.kind_of(state_clock),
                                                  DEFAULT_CALENDAR), 3))
    return Envelope.wrap(payload, source="/civicgrid/audit", event_id=derived_event_id(eid, payload.event_type),
                         correlation_id=rid, time=at)


def _history(rid: str, events: list[Envelope], now: datetime) -> list[dict[str, Any]]:
    """The request's timeline entries up to ``now``: its events, and the escalations of every clock
    that ran late between them (decided at their due time, as the scanner does)."""
    entries: list[dict[str, Any]] = []
    pending = timeline.ordered([_entry(e, k) for k, e in enumerate(events)])
    pending = [e for e in pending if timeline.parse_time(e["time"]) <= now]
    before: list[dict[str, Any]] | None = None
    while True:
        until = timeline.parse_time(pending[0]["time"]) if pending else now
        state = timeline.fold(entries)
        request_clocks = clocks.clocks_of(rid, state, DEFAULT_CALENDAR, before=before)
        before = request_clocks
        due = [c for c in request_clocks if c["active"] and c["due_at"] is not None and c["due_at"] <= until]
        if due:
            step = min(due, key=lambda c: c["due_at"])
            entries.append(_entry(_escalation(rid, step, step["due_at"] + timedelta(seconds=1)), len(entries)))
        elif pending:
            entries.append(pending.pop(0))
        else:
            return entries


def request_documents(n: int, now: datetime, *, seed: int = 11) -> Iterator[dict[str, Any]]:
    """``n`` request documents as the projection writes them, received up to ``now``."""
    rng = random.Random(seed)
    start = now - timedelta(minutes=SPACING_MINUTES * n)
    prefix = f"SUP{uuid.uuid4().hex[:4]}-"
    for i in range(n):
        events = [_realistic(e, i) for e in request_events(i, start, rng, prefix=prefix)]
        rid = events[0].subject
        entries = _history(rid, events, now)
        doc, _delta = fold_document(rid, None, entries, DEFAULT_CALENDAR, kp={})
        yield stored_document(doc)


async def fill(db: AsyncDatabase, n: int, now: datetime) -> dict[str, float]:
    """The collection with ``n`` request documents and the projection's indexes."""
    await ensure_request_indexes(db)
    col = db[request_collection("")]
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for doc in request_documents(n, now):
        batch.append(doc)
        if len(batch) == INSERT_BATCH:
            await col.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await col.insert_many(batch, ordered=False)
    return {"seconds": time.perf_counter() - t0}


async def timed(fn, repeats: int) -> dict[str, Any]:
    runs, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = await fn()
        runs.append(time.perf_counter() - t)
    return {"median": statistics.median(runs), "min": min(runs), "rows": len(out) if isinstance(out, list) else out}


async def measure(url: str, n: int, *, repeats: int = 3, parts: bool = False) -> dict[str, Any]:
    """Fill a fresh database with ``n`` requests and time both lists (district-wide and one street)."""
    client = connect(url, app_name="audit-bench-supervision")
    name = f"audit_bench_sup_{uuid.uuid4().hex[:6]}"
    db = client[name]
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        filled = await fill(db, n, now)
        q = Queries(db, FixedCalendar())
        street = f"{DISTRICT}002"
        out: dict[str, Any] = {"requests": n, "fill_s": filled["seconds"]}
        out["escalated"] = await timed(lambda: q.escalated("", now=now, limit=LIMIT), repeats)
        out["escalated_street"] = await timed(lambda: q.escalated(street, now=now, limit=LIMIT), repeats)
        out["overdue"] = await timed(lambda: q.overdue("", now=now, limit=LIMIT), repeats)
        out["overdue_street"] = await timed(lambda: q.overdue(street, now=now, limit=LIMIT), repeats)
        if parts:
            out.update(await where_the_time_goes(db, now, repeats))
        return out
    finally:
        await drop_quietly(client, name)
        await client.close()


async def where_the_time_goes(db: AsyncDatabase, now: datetime, repeats: int) -> dict[str, Any]:
    """The store's part of each list, query by query (for the investigation, not the bench table)."""
    col = db[request_collection("")]
    stats = await db.command("collStats", col.name)
    wanted = {"open": True, "escalation_count": {"$gt": 0}}
    summary = {"status": 1, "area_code": 1, "escalation_count": 1, "escalated_to": 1, "last_escalated_clock": 1,
               "late_since": 1, "schema_version": 1}

    def q(filt, proj=None, sort=None, limit=0):
        async def run():
            c = col.find(filt, proj)
            if sort:
                c = c.sort(sort, 1)
            if limit:
                c = c.limit(limit)
            return await c.to_list(None)
        return run

    return {
        "docs": stats.get("count"), "avg_bytes": stats.get("avgObjSize"), "size_mb": stats.get("size", 0) / 1e6,
        "q_nothing": await timed(q({"no_such_field": 1}), repeats),
        "q_id_only": await timed(q({"no_such_field": 1}, {"_id": 1}), repeats),
        "q_escalated_current": await timed(q({**wanted, "schema_version": {"$exists": True}}, summary, "late_since",
                                             LIMIT), repeats),
        "q_escalated_older": await timed(q({**wanted, "schema_version": {"$exists": False}}), repeats),
        "q_overdue_main": await timed(q({"deadline": {"$lt": now}}, None, "deadline", LIMIT), repeats),
        "q_overdue_projected": await timed(q({"deadline": {"$lt": now}}, {"area_code": 1, "clocks": 1}, "deadline",
                                             LIMIT), repeats),
        "q_overdue_unsorted": await timed(q({"deadline": {"$lt": now}}, {"area_code": 1, "clocks": 1}), repeats),
    }


def _variants(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The same document with parts left out: what a scan of each would cost (investigation only)."""
    no_data = {**doc, "timeline": [{k: v for k, v in e.items() if k != "data"} for e in doc["timeline"]]}
    return {
        "as_stored": doc,
        "timeline_without_data": no_data,
        "no_timeline": {k: v for k, v in doc.items() if k != "timeline"},
        "no_timeline_no_contribution": {k: v for k, v in doc.items() if k not in ("timeline", "kpi_contribution")},
        "summary_and_clocks": {k: v for k, v in doc.items() if k not in ("timeline", "kpi_contribution", "state")},
    }


async def scan_costs(url: str, n: int, repeats: int = 3) -> dict[str, Any]:
    """A full scan (a filter nothing matches) of ``n`` documents in each variant's shape."""
    client = connect(url, app_name="audit-bench-supervision")
    name = f"audit_bench_scan_{uuid.uuid4().hex[:6]}"
    db = client[name]
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        batches: dict[str, list[dict[str, Any]]] = {}
        for doc in request_documents(n, now):
            for variant, d in _variants(doc).items():
                batches.setdefault(variant, []).append(d)
                if len(batches[variant]) == INSERT_BATCH:
                    await db[variant].insert_many(batches.pop(variant), ordered=False)
        for variant, docs in batches.items():
            await db[variant].insert_many(docs, ordered=False)
        out = {}
        for variant in _variants({"timeline": [], "_id": 0}):
            stats = await db.command("collStats", variant)
            run = await timed(lambda v=variant: db[v].find({"no_such_field": 1}).to_list(None), repeats)
            out[variant] = {"avg_bytes": stats.get("avgObjSize"), "scan_s": round(run["median"], 3)}
        return out
    finally:
        await drop_quietly(client, name)
        await client.close()


async def main() -> None:
    import os

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", action="store_true", help="time the store's queries one by one too")
    ap.add_argument("--shapes", action="store_true", help="time a full scan of each document shape variant")
    args = ap.parse_args()
    for n in args.requests:
        if args.shapes:
            print({"requests": n, **await scan_costs(os.environ["MONGODB_URL"], n, args.repeats)}, flush=True)
            continue
        print(await measure(os.environ["MONGODB_URL"], n, repeats=args.repeats, parts=args.parts), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
