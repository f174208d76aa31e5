"""Store repositories of the grid service: staff (with atomic load counters), posts, the chain,
departments, the service catalogue and the request (assignment) documents."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_grid.domain.assignment import Staff
from civicgrid_grid.domain.roster import post_id
from civicgrid_runtime.cache import DocumentCache
from civicgrid_runtime.store import find_by_ids


class StaffRepository:
    """Staff documents. ``load`` is a single-document counter guarded by the limit, and ``holding``
    records which requests hold a unit of load, so a redelivered assignment never counts twice and a
    release never frees what was not reserved.

    Every counter write is conditional on the ``load`` value just read (optimistic concurrency, so
    replicas cannot overshoot on a store that applies single-document updates atomically), and is
    also serialised per person inside this process: FerretDB v1 on SQLite loses concurrent updates to
    one document (measured: 200 concurrent ``$inc`` leave 12), so the lock is what makes the limit
    hold there.
    """

    def __init__(self, db: AsyncDatabase, *, cache_seconds: float = 2.0) -> None:
        self.col = db["staff"]
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # every batch of assignments reads its candidates' documents. This process's reservations
        # are applied to the entries held (the write was conditional on the load they show); its
        # other writes drop them; another replica's change shows within cache_seconds, and a load
        # it changed makes the conditional write fail, which reads afresh
        self._cached = DocumentCache(self.col, max_age=cache_seconds)

    async def close(self) -> None:
        await self._cached.close()

    async def ensure_indexes(self) -> None:
        await self.col.create_index([("area", ASCENDING)], name="area")

    async def read_many(self, ids: list[str]) -> dict[str, dict]:
        """Staff documents (with ``holding``; from the cache), for ``reserve_many``'s first attempt."""
        if not ids:
            return {}
        return await self._cached.get_many(ids)

    @staticmethod
    def staff_of(d: dict) -> Staff:
        return Staff(d["_id"], d.get("duty", "on"), d.get("leave_until"), int(d.get("load", 0)),
                     int(d.get("limit", 20)))

    async def get(self, sid: str) -> dict | None:
        return await self.col.find_one({"_id": sid})

    @contextlib.asynccontextmanager
    async def _locked(self, sids):
        locks = [self._locks[s] for s in sorted(set(sids))]
        for lk in locks:
            await lk.acquire()
        try:
            yield
        finally:
            for lk in reversed(locks):
                lk.release()

    async def reserve_many(self, wants: list[tuple[str, str, bool]], *,
                           read: dict[str, dict] | None = None) -> set[tuple[str, str]]:
        """Reserve one unit of load per (staff id, request id, limited) in order; returns the granted
        pairs. A pair already held (redelivery) is granted without counting again. ``read``: the
        documents as just read by the caller, tried first (each write is conditional on the load
        read, so a stale one only costs a retry)."""
        if not wants:
            return set()
        sids = sorted({w[0] for w in wants})
        granted: set[tuple[str, str]] = set()
        async with self._locked(sids):
            for _attempt in range(5):
                if read is not None and all(sid in read for sid in sids):
                    docs, read = read, None
                else:
                    docs = await find_by_ids(self.col, sids, {"load": 1, "limit": 1, "holding": 1})
                plan: dict[str, list[str]] = defaultdict(list)
                pending: list[tuple[str, str, bool]] = []
                for sid, rid, limited in wants:
                    if (sid, rid) in granted:
                        continue
                    d = docs.get(sid)
                    if d is None:
                        continue
                    if rid in (d.get("holding") or []):
                        granted.add((sid, rid))
                        continue
                    load = int(d.get("load", 0)) + len(plan[sid])
                    if limited and load >= int(d.get("limit", 0)):
                        continue
                    if rid not in plan[sid]:
                        plan[sid].append(rid)
                        pending.append((sid, rid, limited))
                if not plan:
                    return granted
                ops = [UpdateOne({"_id": sid, "load": int(docs[sid].get("load", 0))},
                                 {"$inc": {"load": len(rids)}, "$push": {"holding": {"$each": rids}}})
                       for sid, rids in plan.items()]
                res = await self.col.bulk_write(ops, ordered=False)
                if res.modified_count == len(ops):
                    granted |= {(sid, rid) for sid, rids in plan.items() for rid in rids}
                    for sid, rids in plan.items():
                        self._cached.amend(sid, lambda d, rids=rids: d and {
                            **d, "load": int(d.get("load", 0)) + len(rids), "holding": [*(d.get("holding") or []),
                                                                                       *rids]})
                    return granted
                self._cached.invalidate(plan)
                # another writer changed someone meanwhile: re-read and grant what is held now
                held = {sid: set(d.get("holding") or [])
                        for sid, d in (await find_by_ids(self.col, plan, {"holding": 1})).items()}
                granted |= {(sid, rid) for sid, rids in plan.items() for rid in rids if rid in held.get(sid, ())}
        raise RuntimeError("load reservation kept conflicting; retrying the batch")

    async def reserve(self, sid: str, rid: str, *, limit: int = 0, limited: bool = True) -> bool:
        return (sid, rid) in await self.reserve_many([(sid, rid, limited)])

    async def release(self, sid: str | None, rid: str) -> None:
        if not sid:
            return
        async with self._locked([sid]):
            await self.col.update_one({"_id": sid, "holding": rid}, {"$inc": {"load": -1}, "$pull": {"holding": rid}})
            self._cached.invalidate([sid])

    async def set_duty(self, sid: str, *, duty: str, leave_until: str | None, limit: int | None) -> dict | None:
        fields: dict[str, Any] = {"duty": duty, "leave_until": leave_until}
        if limit is not None:
            fields["limit"] = limit
        async with self._locked([sid]):
            try:
                return await self.col.find_one_and_update({"_id": sid}, {"$set": fields},
                                                          return_document=ReturnDocument.AFTER)
            finally:
                self._cached.invalidate([sid])

    async def upsert_many(self, docs: list[dict]) -> None:
        """Demo/roster loading: create or replace profile fields, keeping live load counters."""
        ops = [UpdateOne({"_id": d["_id"]}, {"$set": {k: v for k, v in d.items() if k not in ("_id", "load", "holding")},
                                             "$setOnInsert": {"load": 0, "holding": []}}, upsert=True) for d in docs]
        try:
            for i in range(0, len(ops), 1000):
                await self.col.bulk_write(ops[i:i + 1000], ordered=False)
        finally:
            self._cached.invalidate()


class RosterRepository:
    """Posts (A/B holders of a line of work in an area), the chain holders per level and area, and
    the departments."""

    def __init__(self, db: AsyncDatabase, *, cache_seconds: float = 2.0) -> None:
        self.posts = db["posts"]
        self.chain = db["chain"]
        self.departments = db["departments"]
        # every batch of assignments reads the posts and chain of its grids, and they change only
        # when a roster is imported
        self._cached_posts = DocumentCache(self.posts, max_age=cache_seconds)
        self._cached_chain = DocumentCache(self.chain, max_age=cache_seconds)

    async def close(self) -> None:
        await self._cached_posts.close()
        await self._cached_chain.close()

    async def ensure_indexes(self) -> None:
        await self.posts.create_index([("area", ASCENDING)], name="area")

    async def posts_for(self, areas: list[str], lines: Iterable[str] = ("general", "care")) -> dict[tuple[str, str], dict]:
        """The posts of these areas for these lines of work, read by id (``post_id``)."""
        if not areas:
            return {}
        docs = await self._cached_posts.get_many(sorted({post_id(a, line) for a in areas for line in lines}))
        return {(d["area"], d["line"]): d for d in docs.values()}

    async def chain_for(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        return {k: d["staff_id"] for k, d in (await self._cached_chain.get_many(keys)).items()}

    async def upsert(self, col_name: str, docs: list[dict]) -> None:
        col = getattr(self, col_name)
        ops = [UpdateOne({"_id": d["_id"]}, {"$set": {k: v for k, v in d.items() if k != "_id"}}, upsert=True)
               for d in docs]
        try:
            for i in range(0, len(ops), 1000):
                await col.bulk_write(ops[i:i + 1000], ordered=False)
        finally:
            self._cached_posts.invalidate()
            self._cached_chain.invalidate()


class CatalogueRepository:
    """The service catalogue as grid needs it (last revision wins)."""

    def __init__(self, db: AsyncDatabase, *, cache_seconds: float = 2.0) -> None:
        self.col = db["services"]
        # every batch of assignments reads its services' entries; another replica's change to one
        # shows within cache_seconds, this process's own at once
        self._cached = DocumentCache(self.col, max_age=cache_seconds)

    async def close(self) -> None:
        await self._cached.close()

    async def apply(self, doc: dict) -> bool:
        try:
            res = await self.col.update_one({"_id": doc["_id"], "revision": {"$lt": doc["revision"]}},
                                            {"$set": doc})
            if res.matched_count:
                return True
            try:
                await self.col.insert_one(doc)
                return True
            except DuplicateKeyError:
                return False  # an equal or newer revision is already there
        finally:
            self._cached.invalidate([doc["_id"]])

    async def get_many(self, codes: list[str]) -> dict[str, dict]:
        if not codes:
            return {}
        return await self._cached.get_many(codes)


class RequestRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db["requests"]

    async def ensure_indexes(self) -> None:
        await self.col.create_index([("assignee_id", ASCENDING), ("status", ASCENDING)], name="assignee_status")
        await self.col.create_index([("area.grid", ASCENDING)], name="grid")

    async def get_many(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        return await find_by_ids(self.col, ids, {"_outbox": 0})

    async def get(self, rid: str) -> dict | None:
        return await self.col.find_one({"_id": rid}, {"_outbox": 0, "_applied": 0})

    async def bulk_guarded(self, ops: list[UpdateOne]) -> None:
        """Write guarded upserts; a duplicate key means another delivery already applied the event."""
        if not ops:
            return
        try:
            await self.col.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise
