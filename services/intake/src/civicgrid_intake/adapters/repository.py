"""Store repositories: the demand list, the catalogue, duplicate cells, API keys, the contact access log.

Every hot-path lookup is by ``_id`` equality, the one query FerretDB v1/SQLite answers from an
index; secondary indexes are still declared for MongoDB, where the list/filter queries use them.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import h3
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_runtime.cache import DocumentCache
from civicgrid_runtime.geo import haversine_m
from civicgrid_runtime.store import bulk_in_chunks

H3_RES = 9
#: Buckets of the duplicate index: res-8 cells (edge ~0.5 km), much larger than the search radius,
#: so the cells a search circle touches are almost always one, at most a few.
BUCKET_RES = 8


class Collections:
    def __init__(self, db: AsyncDatabase) -> None:
        from civicgrid_intake.adapters.busy import BusyRetrying

        self.db = db
        self.requests: AsyncCollection = BusyRetrying(db["requests"])  # type: ignore[assignment]
        self.services: AsyncCollection = BusyRetrying(db["services"])  # type: ignore[assignment]
        self.markers: AsyncCollection = BusyRetrying(db["outbox_markers"])  # type: ignore[assignment]
        self.cells: AsyncCollection = BusyRetrying(db["duplicate_cells"])  # type: ignore[assignment]
        self.api_keys: AsyncCollection = BusyRetrying(db["open311_api_keys"])  # type: ignore[assignment]
        self.access_log: AsyncCollection = BusyRetrying(db["contact_access_log"])  # type: ignore[assignment]

    async def ensure_indexes(self) -> None:
        r = self.requests
        await asyncio.gather(
            r.create_index([("received_at", DESCENDING), ("_id", DESCENDING)], name="by_received"),
            r.create_index([("status", ASCENDING), ("received_at", DESCENDING)], name="by_status"),
            r.create_index([("service_code", ASCENDING), ("received_at", DESCENDING)], name="by_service"),
            r.create_index([("area_keys", ASCENDING), ("received_at", DESCENDING)], name="by_area"),
            self.access_log.create_index([("request_id", ASCENDING), ("at", DESCENDING)], name="by_request"),
        )


def cell_of(lat: float, lon: float) -> str:
    return h3.latlng_to_cell(lat, lon, H3_RES)


def cells_covering(lat: float, lon: float, distance_m: float, res: int = BUCKET_RES) -> set[str]:
    """The res-``res`` cells a circle of ``distance_m`` around the point touches (centre + 24 points
    on the circle; exact for circles much smaller than the cells, which BUCKET_RES ensures)."""
    import math

    out = {h3.latlng_to_cell(lat, lon, res)}
    if distance_m <= 0:
        return out
    dlat = distance_m / 111_320.0
    dlon = distance_m / (111_320.0 * max(0.01, math.cos(math.radians(lat))))
    for i in range(24):
        a = 2 * math.pi * i / 24
        out.add(h3.latlng_to_cell(max(-90.0, min(90.0, lat + dlat * math.sin(a))),
                                  ((lon + dlon * math.cos(a) + 180) % 360) - 180, res))
    return out


def bucket_of(lat: float, lon: float) -> str:
    return h3.latlng_to_cell(lat, lon, BUCKET_RES)


def ring_size(distance_m: float) -> int:
    """k of the k-ring that surely contains every point within ``distance_m`` of a cell's points."""
    edge = h3.average_hexagon_edge_length(H3_RES, unit="m")
    # a point is at most one edge from its cell centre; neighbours' centres are sqrt(3)*edge apart
    return max(1, int((distance_m + 2 * edge) // (1.5 * edge)))


class DuplicateCells:
    """Recent open requests per (service, H3 res-8 bucket): one small document each, read by ``_id``.

    Candidates for a new request are read from the buckets its search circle touches (usually one
    document for 50 m), never by scanning the demand list; the exact distance is then computed.
    Entries older than the window are pruned when seen. (Requests themselves carry their res-9 cell.)

    Buckets are read through a ``DocumentCache``: this process's own additions show at once, another
    replica's within ``cache_seconds`` (a likely duplicate filed through another replica in that
    moment is taken for a new request). Every submission read its bucket from the store before: a
    quarter of the store's operations in the full pipeline.
    """

    def __init__(self, col: AsyncCollection, locks=None, *, cache_seconds: float = 2.0) -> None:
        from civicgrid_intake.adapters.locks import KeyedLocks

        self.col = col
        self.locks = locks or KeyedLocks()
        # no background reads: a bucket holds every request of its window and most are asked for
        # less than once a second, so reading all of them twice a second would cost more than it saves
        self.buckets = DocumentCache(col, max_age=cache_seconds, keep_warm=0)

    @staticmethod
    def key(service_code: str, cell: str) -> str:
        return f"{service_code}:{cell}"

    async def close(self) -> None:
        await self.buckets.close()

    async def add(self, service_code: str, cell: str, request_id: str, lat: float, lon: float,
                  at: datetime) -> None:
        await self.add_many([(self.key(service_code, cell), request_id, {"at": at, "lat": lat, "lon": lon})])

    async def add_many(self, entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        """(bucket key, request id, entry) -> one update per bucket, all in one bulk write."""
        fields: dict[str, dict[str, Any]] = {}
        for k, request_id, entry in entries:
            fields.setdefault(k, {})[f"e.{request_id}"] = entry
        if not fields:
            return
        async with self.locks.hold_all("cell:" + k for k in fields):
            await bulk_in_chunks(self.col, [UpdateOne({"_id": k}, {"$set": f}, upsert=True) for k, f in fields.items()])
            for k, f in fields.items():
                added = {path.removeprefix("e."): entry for path, entry in f.items()}
                self.buckets.amend(k, lambda doc, k=k, added=added: _with_entries(doc, k, added))

    async def remove(self, service_code: str, cell: str, request_id: str) -> None:
        k = self.key(service_code, cell)
        async with self.locks.hold("cell:" + k):
            await self.col.update_one({"_id": k}, {"$unset": {f"e.{request_id}": ""}})
            self.buckets.amend(k, lambda doc: _without_entries(doc, [request_id]))

    async def candidates(self, service_code: str, lat: float, lon: float, *, distance_m: float,
                         window: timedelta, now: datetime) -> list[tuple[float, datetime, str]]:
        """(distance, received_at, request id) within distance and window, nearest first."""
        cells = cells_covering(lat, lon, distance_m)
        docs = await self.buckets.get_many(self.key(service_code, c) for c in cells)
        out: list[tuple[float, datetime, str]] = []
        for doc in docs.values():
            if not doc:
                continue
            stale = []
            for rid, e in (doc.get("e") or {}).items():
                at = e["at"] if e["at"].tzinfo else e["at"].replace(tzinfo=UTC)
                if now - at > window:
                    stale.append(rid)
                    continue
                d = haversine_m(lat, lon, e["lat"], e["lon"])
                if d <= distance_m:
                    out.append((d, at, rid))
            if stale:
                async with self.locks.hold("cell:" + doc["_id"]):
                    await self.col.update_one({"_id": doc["_id"]}, {"$unset": {f"e.{r}": "" for r in stale}})
                    self.buckets.amend(doc["_id"], lambda d, stale=stale: _without_entries(d, stale))
        out.sort()
        return out


def _with_entries(doc: dict[str, Any] | None, key: str, added: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A bucket document after ``$set`` of these entries (a new dict: readers may hold the old one)."""
    base = doc or {"_id": key}
    return {**base, "e": {**(base.get("e") or {}), **added}}


def _without_entries(doc: dict[str, Any] | None, request_ids: list[str]) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {**doc, "e": {r: e for r, e in (doc.get("e") or {}).items() if r not in request_ids}}


class ApiKeys:
    """Open311 API keys, stored as SHA-256 hashes."""

    def __init__(self, col: AsyncCollection) -> None:
        self.col = col

    @staticmethod
    def _hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    async def mint(self, name: str, *, key: str | None = None) -> str:
        key = key or "o311_" + secrets.token_urlsafe(24)
        await self.col.update_one({"_id": self._hash(key)},
                                  {"$set": {"name": name, "active": True},
                                   "$setOnInsert": {"created_at": datetime.now(UTC)}}, upsert=True)
        return key

    async def check(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        doc = await self.col.find_one({"_id": self._hash(key)})
        return doc if doc and doc.get("active") else None
