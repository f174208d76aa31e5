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
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_seconds, infrastructure  # noqa: E402

#: the local store's process (its CPU seconds are the figure a loaded machine does not blur), if local
STORE = infrastructure(Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run" / "bench")))

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
    """The entry the projection folds: with its payload, naming the log record it was appended as."""
    return {**timeline.entry_from_envelope(env, topic="bench", partition=0, offset=offset),
            "record": f"bench:0#{offset:012d}"}


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


def _store_cpu() -> float | None:
    return cpu_seconds(STORE).get("store")


async def timed(fn, repeats: int) -> dict[str, Any]:
    """Wall seconds (median, min) and the store's CPU seconds (median) of ``repeats`` calls."""
    runs, store, out = [], [], None
    for _ in range(repeats):
        c, t = _store_cpu(), time.perf_counter()
        out = await fn()
        runs.append(time.perf_counter() - t)
        if c is not None:
            store.append(_store_cpu() - c)
    return {"median": round(statistics.median(runs), 3), "min": round(min(runs), 3),
            "store_cpu": round(statistics.median(store), 3) if store else None,
            "rows": len(out) if isinstance(out, list) else out}


async def measure(url: str, n: int, *, repeats: int = 3) -> dict[str, Any]:
    """Fill a fresh database with ``n`` requests and time both lists (district-wide and one street)."""
    client = connect(url, app_name="audit-bench-supervision")
    name = f"audit_bench_sup_{uuid.uuid4().hex[:6]}"
    db = client[name]
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        filled = await fill(db, n, now)
        stats = await db.command("collStats", request_collection(""))
        q = Queries(db, FixedCalendar())
        street = f"{DISTRICT}002"
        return {
            "requests": n, "fill_s": round(filled["seconds"], 1), "stored_bytes": stats.get("avgObjSize"),
            "escalated": await timed(lambda: q.escalated("", now=now, limit=LIMIT), repeats),
            "escalated_street": await timed(lambda: q.escalated(street, now=now, limit=LIMIT), repeats),
            "overdue": await timed(lambda: q.overdue("", now=now, limit=LIMIT), repeats),
            "overdue_street": await timed(lambda: q.overdue(street, now=now, limit=LIMIT), repeats),
        }
    finally:
        await drop_quietly(client, name)
        await client.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for n in args.requests:
        print(await measure(os.environ["MONGODB_URL"], n, repeats=args.repeats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
