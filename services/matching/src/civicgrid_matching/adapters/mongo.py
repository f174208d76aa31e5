"""The MongoDB adapter of the storage port (``ports.Store``): documents as ``adapters.documents``
writes them, the runtime's outbox for the events, and one concurrency rule -- a save is one
single-document update guarded by the version it was read at; a new document is a unique-key
claim of its ``_id``.

``deadlines`` holds one small document per open match (``at`` = its next offer expiry) so the
expiry job reads a short queue instead of every match; it is derived from ``matches`` and written
only when a match's next expiry changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from civicgrid_matching.adapters import documents as docs
from civicgrid_matching.domain.catalogue import ServiceInfo
from civicgrid_matching.domain.errors import AlreadyRegistered
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.schedule import Schedule
from civicgrid_matching.domain.volunteer import Volunteer
from civicgrid_runtime.store import OutboxRelay, find_by_ids, update_with_events

#: fields of the first version's shapes that a save of the current shape removes
V1_FIELDS = ("v", "corr", "cause", "gen", "_batch", "busy")


def _guard(_id: Any, version: int) -> dict[str, Any]:
    """The version the aggregate was read at. A first-version document kept it in ``v``, or (a
    volunteer, an hours entry) kept none and reads as version 1."""
    older = [{"version": {"$exists": False}, "v": version}]
    if version == 1:
        older.append({"version": {"$exists": False}, "v": {"$exists": False}})
    return {"_id": _id, "$or": [{"version": version}, *older]}


class _Collection:
    name = ""

    def __init__(self, db: AsyncDatabase, relay: OutboxRelay | None, source: str) -> None:
        self.col = db[self.name]
        self.relay = relay
        self.source = source

    def _load(self, d: dict | None):
        return docs.load(self.name, d) if d else None

    async def _find(self, query: dict, *, sort: str | None = None, skip: int = 0, limit: int = 0) -> list:
        cur = self.col.find(query)
        if sort:
            cur = cur.sort(sort, 1)
        return [self._load(d) for d in await cur.skip(skip).limit(limit).to_list(None)]

    async def _insert(self, doc: dict) -> bool:
        try:
            await self.col.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    async def _update(self, doc: dict, version: int, events=(), crash_point: str | None = None) -> bool:
        """Write ``doc`` (the next version) if the stored one is still at ``version``."""
        fields = {k: v for k, v in doc.items() if k != "_id"}
        stale = {f: "" for f in V1_FIELDS}
        new = await update_with_events(self.col, self.relay, filter=_guard(doc["_id"], version),
                                       update={"$set": fields, "$unset": stale}, events=events,
                                       crash_point_name=crash_point)
        return new is not None


class MongoMatches(_Collection):
    name = "matches"

    def __init__(self, db: AsyncDatabase, relay: OutboxRelay | None, source: str) -> None:
        super().__init__(db, relay, source)
        self.deadlines = db["deadlines"]

    def _load(self, d: dict | None) -> Match | None:
        m = docs.load(self.name, d) if d else None
        if m is not None:
            m.stored_expiry = d.get("next_expiry")
        return m

    async def get(self, request_id: str) -> Match | None:
        return self._load(await self.col.find_one({"_id": request_id}))

    async def add_new(self, matches: Sequence[Match], *, crash_point: str | None = None) -> set[str]:
        if not matches:
            return set()
        for m in matches:
            m.version = 1
        queue = [{"_id": m.request_id, "schema_version": docs.SCHEMA_VERSION, "at": m.next_expiry}
                 for m in matches if m.next_expiry]
        if queue:  # before the matches: a deadline without its match is dropped by the expiry job
            await _insert_missing(self.deadlines, queue)
        items = [(docs.match_doc(m), [r.envelope(self.source) for r in m.events]) for m in matches]
        if self.relay is None:
            raise RuntimeError("matches need the outbox relay")
        inserted = set(await self.relay.insert_caused(self.col, items, crash_point_name=crash_point))
        for m in matches:
            if m.request_id in inserted:
                m.events.clear()
                m.stored_expiry = m.next_expiry
            else:
                m.version = 0
        return inserted

    async def save(self, match: Match, *, crash_point: str | None = None) -> bool:
        nxt = match.version + 1
        doc = {**docs.match_doc(match), "version": nxt}
        envs = [r.envelope(self.source) for r in match.events]
        if not await self._update(doc, match.version, envs, crash_point):
            return False
        match.version = nxt
        match.events.clear()
        if match.next_expiry != match.stored_expiry:
            await self.requeue(match.request_id, match.next_expiry)
            match.stored_expiry = match.next_expiry
        return True

    async def offered_to(self, volunteer_id: str) -> list[Match]:
        return await self._find({"offered_to": volunteer_id, "status": "open"})

    async def due(self, now: datetime, limit: int) -> list[str]:
        due = await self.deadlines.find({"at": {"$lte": now}}).limit(limit).to_list(None)
        return [d["_id"] for d in due]

    async def requeue(self, request_id: str, at: datetime | None) -> None:
        if at is None:
            await self.deadlines.delete_one({"_id": request_id})
        else:
            await self.deadlines.update_one({"_id": request_id}, {"$set": {
                "at": at, "schema_version": docs.SCHEMA_VERSION}}, upsert=True)


async def _insert_missing(col, documents: list[dict]) -> None:
    from civicgrid_runtime.store import insert_new

    await insert_new(col, documents)


class MongoSchedules(_Collection):
    name = "schedules"

    async def get(self, volunteer_id: str) -> Schedule:
        return self._load(await self.col.find_one({"_id": volunteer_id})) or Schedule(volunteer_id)

    async def many(self, volunteer_ids: Sequence[str]) -> dict[str, Schedule]:
        found = await find_by_ids(self.col, volunteer_ids)
        return {i: self._load(found[i]) if i in found else Schedule(i) for i in volunteer_ids}

    async def save(self, schedule: Schedule) -> bool:
        nxt = schedule.version + 1
        doc = {**docs.schedule_doc(schedule), "version": nxt}
        ok = await self._insert(doc) if schedule.version == 0 else await self._update(doc, schedule.version)
        if ok:
            schedule.version = nxt
        return ok

    async def changed_since(self, t: datetime | None) -> list[Schedule]:
        return await self._find({"updated_at": {"$gte": t}} if t else {})

    async def with_holds(self) -> list[Schedule]:
        return await self._find({"bookings.state": "held"})


class MongoVolunteers(_Collection):
    name = "volunteers"

    async def get(self, volunteer_id: str) -> Volunteer | None:
        return self._load(await self.col.find_one({"_id": volunteer_id}))

    async def add(self, volunteer: Volunteer) -> None:
        volunteer.version = 1
        if not await self._insert(docs.volunteer_doc(volunteer)):
            volunteer.version = 0
            raise AlreadyRegistered(f"Volunteer {volunteer.id} is already registered")

    async def save(self, volunteer: Volunteer) -> bool:
        nxt = volunteer.version + 1
        if await self._update({**docs.volunteer_doc(volunteer), "version": nxt}, volunteer.version):
            volunteer.version = nxt
            return True
        return False

    async def changed_since(self, t: datetime | None) -> list[Volunteer]:
        return await self._find({"updated_at": {"$gte": t}} if t else {})

    async def page(self, community: str | None, skip: int, limit: int, *, within: str = "") -> list[Volunteer]:
        return await self._find(_community(within, community), sort="_id", skip=skip, limit=limit)

    async def many(self, volunteer_ids: Sequence[str]) -> dict[str, Volunteer]:
        return {i: self._load(d) for i, d in (await find_by_ids(self.col, volunteer_ids)).items()}

    async def members_of(self, work_unit: str, *, within: str = "") -> list[Volunteer]:
        return await self._find({"work_unit": work_unit, "party_member": True, **_community(within)}, sort="_id")

    async def work_units(self, *, within: str = "") -> list[str]:
        return sorted(u for u in await self.col.distinct("work_unit", _community(within)) if u)


def _community(within: str, exactly: str | None = None) -> dict[str, Any]:
    """The filter on ``community``: starting with ``within`` (an anchored, case-sensitive prefix
    expression, which MongoDB answers from the ``community`` index), equal to ``exactly``."""
    ops: dict[str, Any] = {}
    if exactly:
        ops["$eq"] = exactly
    if within:
        ops["$regex"] = f"^{re.escape(within)}"
    return {"community": ops} if ops else {}


class MongoHours(_Collection):
    name = "hours"

    async def get(self, entry_id: str) -> HoursEntry | None:
        return self._load(await self.col.find_one({"_id": entry_id}))

    async def add(self, entry: HoursEntry) -> bool:
        entry.version = 1
        if await self._insert(docs.hours_doc(entry)):
            return True
        entry.version = 0
        return False

    async def save(self, entry: HoursEntry) -> bool:
        nxt = entry.version + 1
        envs = [r.envelope(self.source) for r in entry.events]
        if await self._update({**docs.hours_doc(entry), "version": nxt}, entry.version, envs):
            entry.version = nxt
            entry.events.clear()
            return True
        return False

    async def of_volunteer(self, volunteer_id: str, month: str | None = None) -> list[HoursEntry]:
        q: dict[str, Any] = {"volunteer_id": volunteer_id}
        if month:
            q["month"] = month
        return await self._find(q, sort="check_in_at")

    async def of_month(self, month: str) -> list[HoursEntry]:
        return await self._find({"month": month}, sort="check_in_at")


class MongoCatalogue(_Collection):
    name = "services"

    async def put(self, service: ServiceInfo) -> ServiceInfo:
        try:
            await self.col.update_one({"_id": service.code, "revision": {"$lt": service.revision}},
                                      {"$set": {k: v for k, v in docs.service_doc(service).items() if k != "_id"}},
                                      upsert=True)
        except DuplicateKeyError:
            pass  # the same or a newer revision is stored (the guard did not match; the upsert collided)
        return self._load(await self.col.find_one({"_id": service.code}))

    async def all(self) -> list[ServiceInfo]:
        return await self._find({})


class MongoStore:
    """Matching's collections on one database."""

    #: the collections whose saves carry events (the runtime's outbox relay watches them)
    OUTBOX = ("matches", "hours")

    def __init__(self, db: AsyncDatabase, relay: OutboxRelay | None, source: str) -> None:
        self.db = db
        self.matches = MongoMatches(db, relay, source)
        self.schedules = MongoSchedules(db, relay, source)
        self.volunteers = MongoVolunteers(db, relay, source)
        self.hours = MongoHours(db, relay, source)
        self.catalogue = MongoCatalogue(db, relay, source)

    async def ensure_indexes(self) -> None:
        db = self.db
        await db.volunteers.create_index([("updated_at", 1)], name="updated_at")
        await db.volunteers.create_index([("community", 1)], name="community")
        await db.volunteers.create_index([("work_unit", 1), ("party_member", 1)], name="work_unit")
        await db.schedules.create_index([("updated_at", 1)], name="updated_at")
        await db.schedules.create_index([("bookings.state", 1)], name="booking_state")
        await db.deadlines.create_index([("at", 1)], name="at")
        await db.matches.create_index([("offered_to", 1), ("status", 1)], name="offered_to")
        await db.matches.create_index([("winner", 1), ("status", 1)], name="winner")
        # "a volunteer's hours this month": {volunteer_id, month} (README, "Collections")
        await db.hours.create_index([("volunteer_id", 1), ("month", 1)], name="volunteer_month")
        await db.hours.create_index([("month", 1)], name="month")
