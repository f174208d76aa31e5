"""The MongoDB adapters of intake's ports: requests, Open311 API keys, the contact access log.

A new request is one insert with its events in its own outbox (the runtime's
``OutboxRelay.insert_with_events``); a change is one version-guarded update with its events
(``update_with_events``). No locks, no batching of our own: the runtime's relay and its outbox are
the one protocol of the platform.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import h3
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from civicgrid_intake.adapters import documents as docs_
from civicgrid_intake.domain.submission import Submission
from civicgrid_intake.ports import AlreadyStored
from civicgrid_runtime.access import AccessTrail
from civicgrid_runtime.store import OutboxRelay, find_by_ids, update_with_events

H3_RES = 9
#: where a test kills intake between storing a request and publishing its events
CRASH_POINT = "intake.after_store_before_publish"


def cell_of(lat: float, lon: float) -> str:
    """A request's res-9 cell (stored with it and sent in its events)."""
    return h3.latlng_to_cell(lat, lon, H3_RES)


class Collections:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.requests: AsyncCollection = db[docs_.REQUESTS]
        self.services: AsyncCollection = db[docs_.SERVICES]
        self.calendar_years: AsyncCollection = db[docs_.CALENDAR_YEARS]
        self.api_keys: AsyncCollection = db[docs_.API_KEYS]
        #: staff reads of contact details and admin changes, each with its event (civicgrid_runtime.access)
        self.staff_access: AsyncCollection = AccessTrail.collection(db)

    async def ensure_indexes(self) -> None:
        r = self.requests
        await asyncio.gather(
            r.create_index([("received_at", DESCENDING), ("_id", DESCENDING)], name="by_received"),
            r.create_index([("status", ASCENDING), ("received_at", DESCENDING)], name="by_status"),
            r.create_index([("service_code", ASCENDING), ("received_at", DESCENDING)], name="by_service"),
            r.create_index([("area_keys", ASCENDING), ("received_at", DESCENDING)], name="by_area"),
            r.create_index([("open", ASCENDING), ("expected_at", ASCENDING)], name="open_by_deadline"),
            self.staff_access.create_index([("subject", ASCENDING), ("at", ASCENDING)], name="by_subject"),
        )


class MongoRequests:
    def __init__(self, col: AsyncCollection, relay: OutboxRelay) -> None:
        self.col = col
        self.relay = relay

    async def get(self, request_id: str) -> Submission | None:
        doc = await self.col.find_one({"_id": request_id}, {"_outbox": 0})
        return docs_.from_document(doc) if doc else None

    async def get_many(self, request_ids: Iterable[str]) -> dict[str, Submission]:
        found = await find_by_ids(self.col, request_ids, {"_outbox": 0})
        return {i: docs_.from_document(d) for i, d in found.items()}

    async def add(self, sub: Submission) -> None:
        try:
            # a save after this one moves the version on: the relay then clears only what it published
            await self.relay.insert_with_events(self.col, docs_.to_document(sub), sub.take_events(),
                                                unchanged={"version": sub.version}, crash_point_name=CRASH_POINT)
        except DuplicateKeyError:
            raise AlreadyStored(sub.request_id) from None

    async def save(self, sub: Submission) -> bool:
        events = sub.pending_events
        out = await update_with_events(
            self.col, self.relay, filter={"_id": sub.request_id, "version": sub.version},
            update=docs_.save_update(sub), events=events)
        if out is None:
            return False
        sub.take_events()
        sub.version += 1
        return True

    async def read(self, request_id: str) -> dict[str, Any] | None:
        doc = await self.col.find_one({"_id": request_id}, {"_outbox": 0})
        return docs_.view(doc) if doc else None

    async def search(self, *, ids: list[str] | None = None, statuses: list[str] | None = None,
                     service_codes: list[str] | None = None, area: str | None = None,
                     start: datetime | None = None, end: datetime | None = None,
                     after: tuple[datetime, str] | None = None, skip: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        if ids:
            found = await find_by_ids(self.col, ids, {"_outbox": 0})
            return [docs_.view(found[i]) for i in dict.fromkeys(ids) if i in found][skip:skip + limit]
        q: dict[str, Any] = {}
        if statuses:
            q["status"] = {"$in": statuses}
        if service_codes:
            q["service_code"] = {"$in": service_codes}
        if area:
            q["area_keys"] = area
        if start or end:
            q["received_at"] = {**({"$gte": start} if start else {}), **({"$lt": end} if end else {})}
        if after:
            t, i = after
            q["$or"] = [{"received_at": {"$lt": t}}, {"received_at": t, "_id": {"$lt": i}}]
        cur = self.col.find(q, {"_outbox": 0}).sort([("received_at", -1), ("_id", -1)]).skip(skip).limit(limit)
        return [docs_.view(d) for d in await cur.to_list(None)]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return "o311_" + secrets.token_urlsafe(24)


class MongoApiKeys:
    """Open311 API keys, stored as SHA-256 hashes."""

    def __init__(self, col: AsyncCollection) -> None:
        self.col = col

    async def mint(self, name: str, *, key: str | None = None) -> str:
        key = key or new_api_key()
        await self.col.update_one({"_id": key_hash(key)},
                                  {"$set": docs_.stamped(docs_.API_KEYS, {"name": name, "active": True}),
                                   "$setOnInsert": {"created_at": datetime.now(UTC)}}, upsert=True)
        return key

    async def check(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        doc = await self.col.find_one({"_id": key_hash(key)})
        doc = docs_.upcast(docs_.API_KEYS, doc) if doc else None
        return doc if doc and doc.get("active") else None


