"""Store repositories: the demand list, the catalogue, API keys, the contact access log.

Every hot-path lookup is by ``_id`` equality, the one query FerretDB v1/SQLite answers from an
index; secondary indexes are still declared for MongoDB, where the list/filter queries use them.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import h3
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

H3_RES = 9


class Collections:
    def __init__(self, db: AsyncDatabase) -> None:
        from civicgrid_intake.adapters.busy import BusyRetrying
        from civicgrid_runtime.access import AccessTrail

        self.db = db
        self.requests: AsyncCollection = BusyRetrying(db["requests"])  # type: ignore[assignment]
        self.services: AsyncCollection = BusyRetrying(db["services"])  # type: ignore[assignment]
        self.calendar_years: AsyncCollection = BusyRetrying(db["calendar_years"])  # type: ignore[assignment]
        self.markers: AsyncCollection = BusyRetrying(db["outbox_markers"])  # type: ignore[assignment]
        self.api_keys: AsyncCollection = BusyRetrying(db["open311_api_keys"])  # type: ignore[assignment]
        #: staff reads of contact details and admin changes, each with its event (civicgrid_runtime.access)
        self.staff_access: AsyncCollection = BusyRetrying(AccessTrail.collection(db))  # type: ignore[assignment]

    async def ensure_indexes(self) -> None:
        r = self.requests
        await asyncio.gather(
            r.create_index([("received_at", DESCENDING), ("_id", DESCENDING)], name="by_received"),
            r.create_index([("status", ASCENDING), ("received_at", DESCENDING)], name="by_status"),
            r.create_index([("service_code", ASCENDING), ("received_at", DESCENDING)], name="by_service"),
            r.create_index([("area_keys", ASCENDING), ("received_at", DESCENDING)], name="by_area"),
            self.staff_access.create_index([("subject", ASCENDING), ("at", ASCENDING)], name="by_subject"),
        )


def cell_of(lat: float, lon: float) -> str:
    """A request's res-9 cell (stored with it and sent in its events)."""
    return h3.latlng_to_cell(lat, lon, H3_RES)


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
