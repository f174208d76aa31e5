"""Read side: timelines (also "as of" a past moment), supervision lists, KPIs, evaluations.

KPI queries read only the day counter documents of one (dimension, key) in the period, by ``_id``
(at most 366 small documents for a year), and compute rates and quantiles in Python.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_audit.adapters.auditlog import record_payloads
from civicgrid_audit.adapters.documents import COUNTERS, RECORDS, upcast
from civicgrid_audit.adapters.projection import legacy_counter_collection, request_collection, with_payloads
from civicgrid_audit.domain import clocks, kpi, timeline
from civicgrid_contracts.calendar import WorkingCalendar, working_hours_between
from civicgrid_contracts.topics import REQUEST_PARTITIONS
from civicgrid_runtime.calendar import CalendarSource
from civicgrid_runtime.store import find_by_ids

EVALUATED = ("staff", "grid", "community", "department", "property")


def _area_filter(prefix: str) -> dict[str, Any]:
    return {"area_code": {"$regex": f"^{re.escape(prefix)}"}} if prefix else {}


def public_entry(e: dict[str, Any]) -> dict[str, Any]:
    return {k: e[k] for k in ("id", "type", "time", "who", "service", "topic", "partition", "offset", "data")}


#: what each list reads of a request document (never its timeline, state or KPI contribution)
OVERDUE_FIELDS = {"area_code": 1, "clocks": 1}
ESCALATED_FIELDS = {"status": 1, "area_code": 1, "escalation_count": 1, "escalated_to": 1, "last_escalated_clock": 1,
                    "late_since": 1}


def overdue_rows(doc: dict[str, Any], now: datetime, calendar: WorkingCalendar) -> list[dict[str, Any]]:
    """A row per running clock of the request past its deadline at ``now``."""
    rows = []
    for c in doc["clocks"]:
        due = timeline.parse_time(c["base_due"])
        if not c["active"] or due >= now:
            continue
        rows.append({
            "request_id": doc["_id"], "clock": c["clock"], "department": c.get("department"),
            "area_code": doc.get("area_code"), "due_at": due.isoformat(),
            "overdue_hours": round(working_hours_between(due, now, clocks.kind_of(c), calendar), 2),
            "overdue_calendar_hours": round((now - due).total_seconds() / 3600, 2),
            "escalation_steps": c["step"] - 1, "level": c["level"],
        })
    return rows


def escalated_row(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    late_since = timeline.parse_time(doc["late_since"])
    return {"request_id": doc["_id"], "area_code": doc.get("area_code"), "status": doc["status"],
            "escalations": doc["escalation_count"], "level": doc["escalated_to"],
            "last_clock": doc["last_escalated_clock"], "late_since": late_since.isoformat(),
            "late_hours": round((now - late_since).total_seconds() / 3600, 2)}


class Queries:
    def __init__(self, db: AsyncDatabase, calendar: CalendarSource) -> None:
        self.db = db
        self.calendar = calendar
        self._legacy: list[int] | None = None

    async def request(self, request_id: str, *, as_of: datetime | None = None) -> dict[str, Any] | None:
        name = request_collection(request_id)
        doc = upcast(name, await self.db[name].find_one({"_id": request_id}))
        if doc is None:
            return None
        entries = doc["timeline"]
        stored_apart = [e["record"] for e in entries if "data" not in e]
        if stored_apart:  # the payloads its audit-log records hold
            entries = with_payloads(entries, await record_payloads(self.db[RECORDS], stored_apart))
        if as_of is not None:
            entries = [e for e in entries if timeline.parse_time(e["time"]) <= as_of]
            state = timeline.fold(entries)
        else:
            state = doc["state"]
        return {"request_id": request_id, "as_of": as_of.isoformat() if as_of else None, "state": state,
                "timeline": [public_entry(e) for e in entries]}

    async def overdue(self, area: str, *, now: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Running clocks past their deadline, most late first: one query on the requests'
        ``deadline`` (the earliest of their running clocks; index ``area_deadline``), reading only
        their area and clocks, each late clock a row. Requests of an older shape were rewritten at
        start (adapters/upgrade.py), so nothing else is looked through."""
        now = now or datetime.now(UTC)
        docs = await self.db[request_collection("")].find(
            {"deadline": {"$lt": now}, **_area_filter(area)}, OVERDUE_FIELDS).sort(
            [("deadline", ASCENDING), ("_id", ASCENDING)]).limit(limit).to_list(None)
        rows = [row for doc in docs for row in overdue_rows(doc, now, self.calendar.calendar)]
        rows.sort(key=lambda r: (-r["overdue_calendar_hours"], r["request_id"]))
        return rows[:limit]

    async def escalated(self, area: str, *, now: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Open requests escalated at least once, most late first: one query on the request
        documents' plain summary fields (index ``escalated``), reading only those fields."""
        now = now or datetime.now(UTC)
        docs = await self.db[request_collection("")].find(
            {"open": True, "escalation_count": {"$gt": 0}, **_area_filter(area)}, ESCALATED_FIELDS).sort(
            [("late_since", ASCENDING), ("_id", ASCENDING)]).limit(limit).to_list(None)
        return [escalated_row(d, now) for d in docs]

    async def _legacy_shards(self) -> list[int]:
        """The partition numbers whose counter collection a database kept from before counters were
        one document each (looked up once: nothing creates them any more)."""
        if self._legacy is None:
            names = set(await self.db.list_collection_names())
            self._legacy = [p for p in range(REQUEST_PARTITIONS) if legacy_counter_collection(p) in names]
        return self._legacy

    async def counters(self, dim: str, key: str, start: str, end: str) -> dict[str, int]:
        """Sum of the period's day documents, read by ``_id`` in one ``$in`` (and one per sharded
        collection an older database still holds, side by side)."""
        ids = [kpi.counter_id(dim, key, b) for b in kpi.buckets_for(start, end)]

        async def shard(p: int) -> list[dict[str, Any]]:
            name = legacy_counter_collection(p)
            return [upcast(name, d) for d in (await find_by_ids(self.db[name], [f"{c}|p{p}" for c in ids],
                                                                {"m": 1})).values()]

        async def current() -> list[dict[str, Any]]:
            return [upcast(COUNTERS, d) for d in (await find_by_ids(self.db[COUNTERS], ids, {"m": 1})).values()]

        total: dict[str, int] = {}
        for docs in await asyncio.gather(current(), *(shard(p) for p in await self._legacy_shards())):
            for c in docs:
                kpi.add_into(total, c.get("m") or {})
        return total

    async def kpis(self, dim: str, key: str, start: str, end: str) -> dict[str, Any]:
        m = await self.counters(dim, key, start, end)
        return {"dimension": dim, "key": key, "from": start, "to": end, **kpi.figures(m)}

    async def evaluation(self, quarter: str, dims: tuple[str, ...] = EVALUATED) -> dict[str, Any]:
        """Per dimension: every key with its figures, ranked by score (then resolution, then volume)."""
        start, end = kpi.quarter_range(quarter)
        out: dict[str, Any] = {"quarter": quarter, "from": start, "to": end, "generated_at":
                               datetime.now(UTC).isoformat(), "score": "mean of the defined headline rates "
                               "(response, resolution, satisfaction; report-back for departments) x 100",
                               "dimensions": {}}
        for dim in dims:
            sums: dict[str, dict[str, int]] = defaultdict(dict)
            days = kpi.buckets_for(start, end)  # the quarter's day documents (index dim_day)
            for name in [COUNTERS] + [legacy_counter_collection(p) for p in await self._legacy_shards()]:
                async for c in self.db[name].find({"dim": dim, "day": {"$in": days}}, {"m": 1, "key": 1}):
                    c = upcast(name, c)
                    kpi.add_into(sums[c["key"]], c.get("m") or {})
            rows = []
            for key, m in sums.items():
                f = kpi.figures(m)
                if not f["received"]:
                    continue
                rows.append({"key": key, "score": kpi.score(f), **f})
            rows.sort(key=lambda r: (-r["score"], -(r["resolution_rate"] or 0), -r["received"], r["key"]))
            for i, r in enumerate(rows):
                r["rank"] = i + 1 if i == 0 or r["score"] != rows[i - 1]["score"] else rows[i - 1]["rank"]
            out["dimensions"][dim] = rows
        return out
