"""MongoDB-protocol adapters of grid's storage port (``domain.ports``): requests (through the
runtime's outbox), staff (load counters), the roster and the service catalogue.

One concurrency rule everywhere: a write is a single-document update guarded by what was read
(a request's ``version``, a staff member's ``load``), or an insert claiming a unique ``_id``. No
locks: on MongoDB (and the project's FerretDB build) a single-document update is atomic."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_contracts import Envelope
from civicgrid_grid.adapters.documents import (
    APPLIED,
    FIRST_SCHEMA_VERSION,
    RETIRED_FIELDS,
    ROSTER_SCHEMA_VERSION,
    candidate_of,
    case_from_document,
    case_to_document,
    member_fields,
    member_from_document,
    post_from_document,
    with_roster_defaults,
)
from civicgrid_grid.domain.request import OPEN, RequestCase
from civicgrid_grid.domain.roster import Post, StaffMember, post_id
from civicgrid_runtime.store import (
    CAUSED,
    OUTBOX,
    PENDING,
    OutboxRelay,
    bulk_in_chunks,
    find_by_ids,
    update_with_events,
)

#: staff documents' fields the load reservation reads
LOAD_FIELDS = {"load": 1, "limit": 1, "holding": 1}
#: a guarded write that keeps losing to other writers gives up after this many reads
ATTEMPTS = 5
#: what reads of roster documents leave out: the runtime's outbox of an administrative change
NO_OUTBOX = {OUTBOX: 0, PENDING: 0}
#: at most this many staff members or posts in one listing
LISTING_LIMIT = 2000


def under(area: str) -> dict[str, Any]:
    """Filter fragment: the ``area`` field lies in ``area`` (a prefix: an anchored pattern, which
    MongoDB answers from the ``area`` index)."""
    return {"area": {"$regex": f"^{re.escape(area)}"}} if area else {}


def version_guard(version: int) -> dict[str, Any]:
    """Filter fragment: the document is still at ``version`` (0: written before versions)."""
    return {"version": version} if version else {"version": {"$exists": False}}


def _ignore_duplicates(exc: BulkWriteError) -> None:
    if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
        raise exc


class RequestRepository:
    """Request documents: the aggregate's state, its applied-event guard and its outbox."""

    def __init__(self, db: AsyncDatabase, relay: OutboxRelay | None = None) -> None:
        self.col = db["requests"]
        self.relay = relay

    async def ensure_indexes(self) -> None:
        await self.col.create_index([("assignee_id", ASCENDING), ("status", ASCENDING)], name="assignee_status")
        await self.col.create_index([("dispatched_to", ASCENDING), ("status", ASCENDING)], name="dispatched_status")
        await self.col.create_index([("area.grid", ASCENDING), ("status", ASCENDING), ("due_resolution", ASCENDING)],
                                    name="grid_status_due")

    async def get(self, rid: str) -> RequestCase | None:
        doc = await self.col.find_one({"_id": rid}, {OUTBOX: 0, CAUSED: 0})
        return case_from_document(doc) if doc else None

    async def get_many(self, ids: Sequence[str]) -> dict[str, RequestCase]:
        if not ids:
            return {}
        docs = await find_by_ids(self.col, ids, {OUTBOX: 0, CAUSED: 0})
        return {rid: case_from_document(d) for rid, d in docs.items()}

    async def insert_new(self, items: Sequence[tuple[RequestCase, Sequence[Envelope]]], *,
                         crash_point_name: str | None = None) -> set[str]:
        docs = []
        for case, events in items:
            case.version = 1
            docs.append((case_to_document(case), list(events)))
        assert self.relay is not None, "a request repository that publishes needs the outbox relay"
        return set(await self.relay.insert_caused(self.col, docs, crash_point_name=crash_point_name))

    def _guarded(self, case: RequestCase, cause_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        filt = {"_id": case.id, **version_guard(case.version)}
        doc = case_to_document(case)
        del doc["_id"]
        if cause_id is not None:
            filt[APPLIED] = {"$ne": cause_id}
            doc[APPLIED] = [*doc[APPLIED], cause_id]
        doc["version"] = case.version + 1
        if not case.version:  # written before versions: drop the retired fields of that shape
            return filt, {"$set": doc, "$unset": {f: "" for f in RETIRED_FIELDS}}
        return filt, {"$set": doc}

    async def save(self, case: RequestCase, events: Sequence[Envelope] = (), *,
                   cause_id: str | None = None) -> bool:
        filt, update = self._guarded(case, cause_id)
        res = await update_with_events(self.col, self.relay, filter=filt, update=update, events=events)
        if res is None:
            return False
        case.version += 1
        if cause_id is not None:
            case.applied.append(cause_id)
        return True

    async def save_many(self, cases: Sequence[tuple[RequestCase, str]]) -> None:
        ops = [UpdateOne(*self._guarded(case, cause_id)) for case, cause_id in cases]
        try:
            await bulk_in_chunks(self.col, ops)
        except BulkWriteError as exc:
            _ignore_duplicates(exc)

    async def _open(self, filt: dict[str, Any], limit: int) -> list[RequestCase]:
        cursor = self.col.find({**filt, "status": {"$in": list(OPEN)}}, {OUTBOX: 0, CAUSED: 0, APPLIED: 0})
        docs = await cursor.sort([("prio", 1), ("due_response", 1)]).to_list(limit)
        return [case_from_document(d) for d in docs]

    async def open_held_by(self, assignee_id: str, *, limit: int = 1000) -> list[RequestCase]:
        return await self._open({"assignee_id": assignee_id}, limit)

    async def open_dispatched_to(self, department: str, *, limit: int = 1000) -> list[RequestCase]:
        return await self._open({"dispatched_to": department}, limit)


class StaffRepository:
    """Staff documents. ``load`` is a counter guarded by the limit, and ``holding`` lists the
    requests holding a unit of it, so a redelivered assignment never counts twice and a release
    never frees what was not reserved. Every counter write is conditional on the ``load`` just read
    (the staff document's version), so concurrent writers -- this process's or another replica's --
    cannot overshoot: the loser reads again."""

    def __init__(self, db: AsyncDatabase, relay: OutboxRelay | None = None) -> None:
        self.col = db["staff"]
        #: publishes the administrative change events a profile or duty write carries
        self.relay = relay

    async def ensure_indexes(self) -> None:
        await self.col.create_index([("area", ASCENDING)], name="area")

    async def read_many(self, ids: Sequence[str]) -> dict[str, dict]:
        if not ids:
            return {}
        return await find_by_ids(self.col, ids, NO_OUTBOX)

    staff_of = staticmethod(candidate_of)

    async def get(self, sid: str) -> dict | None:
        return await self.col.find_one({"_id": sid}, NO_OUTBOX)

    async def member(self, sid: str) -> StaffMember | None:
        doc = await self.get(sid)
        return member_from_document(doc) if doc else None

    async def members(self, ids: Sequence[str]) -> dict[str, StaffMember]:
        return {sid: member_from_document(d) for sid, d in (await self.read_many(ids)).items()}

    async def members_under(self, area: str, *, limit: int = LISTING_LIMIT) -> list[StaffMember]:
        docs = await self.col.find(under(area), {**NO_OUTBOX, "holding": 0}).sort("_id", 1).to_list(limit)
        return [member_from_document(d) for d in docs]

    async def create(self, member: StaffMember, events: Sequence[Envelope] = ()) -> bool:
        """Claim the member's id with their first profile and its events; False when it is taken."""
        assert self.relay is not None, "a staff repository that publishes needs the outbox relay"
        doc = {"_id": member.id, **member_fields(member), "version": 1, "load": 0, "holding": []}
        try:
            await self.relay.insert_with_events(self.col, doc, list(events))
        except DuplicateKeyError:
            return False
        member.version = 1
        return True

    async def save_member(self, member: StaffMember, events: Sequence[Envelope] = ()) -> bool:
        """Write the profile and duty if nobody changed them since ``member`` was read (its
        ``version``), with the events the change causes; False when the guard refused."""
        res = await update_with_events(
            self.col, self.relay, filter={"_id": member.id, **version_guard(member.version)},
            update={"$set": {**member_fields(member), "version": member.version + 1}}, events=events)
        if res is None:
            return False
        member.version += 1
        return True

    async def reserve_many(self, wants: Sequence[tuple[str, str, bool]], *,
                           read: dict[str, dict] | None = None) -> set[tuple[str, str]]:
        if not wants:
            return set()
        sids = sorted({w[0] for w in wants})
        granted: set[tuple[str, str]] = set()
        for _attempt in range(ATTEMPTS):
            if read is not None and all(sid in read for sid in sids):
                docs, read = read, None
            else:
                docs = await find_by_ids(self.col, sids, LOAD_FIELDS)
            plan = plan_reservations(wants, docs, granted)
            if not plan:
                return granted
            ops = [UpdateOne({"_id": sid, "load": int(docs[sid].get("load", 0))},
                             {"$inc": {"load": len(rids)}, "$push": {"holding": {"$each": rids}}})
                   for sid, rids in plan.items()]
            res = await self.col.bulk_write(ops, ordered=False)
            if res.modified_count == len(ops):
                return granted | {(sid, rid) for sid, rids in plan.items() for rid in rids}
            # another writer changed someone meanwhile: re-read and grant what is held now
            held = {sid: set(d.get("holding") or []) for sid, d in (await find_by_ids(self.col, plan,
                                                                                     {"holding": 1})).items()}
            granted |= {(sid, rid) for sid, rids in plan.items() for rid in rids if rid in held.get(sid, ())}
        raise RuntimeError("load reservation kept conflicting; retrying the batch")

    async def release(self, sid: str | None, rid: str) -> None:
        if not sid:
            return
        for _attempt in range(ATTEMPTS):
            d = await self.col.find_one({"_id": sid, "holding": rid}, {"load": 1})
            if d is None:
                return  # not held (released already, or never reserved)
            res = await self.col.update_one({"_id": sid, "load": d["load"], "holding": rid},
                                            {"$inc": {"load": -1}, "$pull": {"holding": rid}})
            if res.modified_count:
                return
        raise RuntimeError(f"releasing load of {sid} kept conflicting")

    async def upsert_many(self, docs: Sequence[dict]) -> None:
        """Roster loading: create or replace profile fields, keeping live load counters; the
        version moves on, so an administrator's edit read before the import is refused."""
        ops = [UpdateOne({"_id": d["_id"]},
                         {"$set": {**{k: v for k, v in with_roster_defaults(d).items()
                                      if k not in ("_id", "load", "holding", "version")},
                                   "schema_version": ROSTER_SCHEMA_VERSION},
                          "$inc": {"version": 1},
                          "$setOnInsert": {"load": 0, "holding": []}}, upsert=True) for d in docs]
        await bulk_in_chunks(self.col, ops)


def plan_reservations(wants: Sequence[tuple[str, str, bool]], docs: dict[str, dict],
                      granted: set[tuple[str, str]]) -> dict[str, list[str]]:
    """Which requests each person takes in this write: in order, within their limit (held ones are
    granted at once, into ``granted``)."""
    plan: dict[str, list[str]] = defaultdict(list)
    for sid, rid, limited in wants:
        d = docs.get(sid)
        if (sid, rid) in granted or d is None:
            continue
        if rid in (d.get("holding") or []):
            granted.add((sid, rid))
            continue
        load = int(d.get("load", 0)) + len(plan[sid])
        if limited and load >= int(d.get("limit", 0)):
            continue
        if rid not in plan[sid]:
            plan[sid].append(rid)
    return plan


class RosterRepository:
    """Posts (A/B holders of a line of work in an area), the chain holders per level and area, and
    the departments."""

    def __init__(self, db: AsyncDatabase, relay: OutboxRelay | None = None) -> None:
        self.posts = db["posts"]
        self.chain = db["chain"]
        self.departments = db["departments"]
        #: publishes the administrative change events a holder change carries
        self.relay = relay

    async def ensure_indexes(self) -> None:
        await self.posts.create_index([("area", ASCENDING)], name="area")
        await self.posts.create_index([("a", ASCENDING)], name="a")
        await self.posts.create_index([("b", ASCENDING)], name="b")

    async def post(self, pid: str) -> Post | None:
        doc = await self.posts.find_one({"_id": pid}, NO_OUTBOX)
        return post_from_document(doc) if doc else None

    async def posts_under(self, area: str, *, limit: int = LISTING_LIMIT) -> list[Post]:
        docs = await self.posts.find(under(area), NO_OUTBOX).sort("_id", 1).to_list(limit)
        return [post_from_document(d) for d in docs]

    async def posts_held_by(self, sid: str) -> list[Post]:
        docs = await self.posts.find({"$or": [{"a": sid}, {"b": sid}]}, NO_OUTBOX).sort("_id", 1).to_list(None)
        return [post_from_document(d) for d in docs]

    async def save_post(self, post: Post, events: Sequence[Envelope] = ()) -> bool:
        """Write the holders if nobody changed the post since it was read (its ``version``), with
        the events the change causes; False when the guard refused."""
        res = await update_with_events(
            self.posts, self.relay, filter={"_id": post.id, **version_guard(post.version)},
            update={"$set": {"a": post.a, "b": post.b, "version": post.version + 1,
                             "schema_version": ROSTER_SCHEMA_VERSION}}, events=events)
        if res is None:
            return False
        post.version += 1
        return True

    async def posts_for(self, areas: Sequence[str], lines: Iterable[str] = ("general", "care")
                        ) -> dict[tuple[str, str], dict]:
        if not areas:
            return {}
        docs = await find_by_ids(self.posts, sorted({post_id(a, line) for a in areas for line in lines}), NO_OUTBOX)
        return {(d["area"], d["line"]): d for d in docs.values()}

    async def chain_for(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        return {k: d["staff_id"] for k, d in (await find_by_ids(self.chain, keys)).items()}

    async def known_departments(self, ids: Sequence[str]) -> set[str]:
        return {d["_id"] async for d in self.departments.find({"_id": {"$in": list(ids)}}, {"_id": 1})}

    async def list_departments(self) -> list[dict[str, Any]]:
        return await self.departments.find({}, {"schema_version": 0}).sort("_id", 1).to_list(None)

    async def upsert(self, kind: str, docs: Sequence[dict]) -> None:
        """Roster loading. Posts get the next version (an edit read before the import is refused)."""
        col = {"posts": self.posts, "chain": self.chain, "departments": self.departments}[kind]
        shape = ROSTER_SCHEMA_VERSION if kind == "posts" else FIRST_SCHEMA_VERSION
        bump = {"$inc": {"version": 1}} if kind == "posts" else {}
        ops = [UpdateOne({"_id": d["_id"]}, {"$set": {**{k: v for k, v in d.items() if k not in ("_id", "version")},
                                                     "schema_version": shape}, **bump}, upsert=True)
               for d in docs]
        await bulk_in_chunks(col, ops)


class CatalogueRepository:
    """The service catalogue as grid needs it (last revision wins)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db["services"]

    async def apply(self, doc: dict) -> bool:
        doc = {**doc, "schema_version": FIRST_SCHEMA_VERSION}
        res = await self.col.update_one({"_id": doc["_id"], "revision": {"$lt": doc["revision"]}}, {"$set": doc})
        if res.matched_count:
            return True
        try:
            await self.col.insert_one(doc)  # the unique _id claims the first revision
            return True
        except DuplicateKeyError:
            return False  # an equal or newer revision is already there

    async def get_many(self, codes: Sequence[str]) -> dict[str, dict]:
        if not codes:
            return {}
        return await find_by_ids(self.col, codes)
