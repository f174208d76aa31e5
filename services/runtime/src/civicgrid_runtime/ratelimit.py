"""Per-client rate limits shared by every replica of a service.

A fixed window per client: one counter document per (limit, client, window) in the service's own
database, counted by a single atomic ``$inc`` upsert, so N replicas share one limit instead of
multiplying it (the local store runs concurrent updates of one document one at a time: patch 0003).
The client is hashed into the id: no raw IP address or API key is kept. Expired windows are swept.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


@dataclass(frozen=True)
class Limit:
    name: str
    requests: int  # per window; 0 = no limit

    @property
    def active(self) -> bool:
        return self.requests > 0


class RateLimiter:
    def __init__(self, collection: AsyncCollection, *, window_seconds: float) -> None:
        self.col, self.window = collection, window_seconds

    async def hit(self, limit: Limit, client: str, *, now: float | None = None) -> int | None:
        """Count one request of ``client`` against ``limit``: None while within it, else the seconds
        until the window ends (the ``Retry-After``)."""
        if not limit.active:
            return None
        now = time.time() if now is None else now
        start = math.floor(now / self.window) * self.window
        digest = hashlib.sha256(client.encode()).hexdigest()[:32]
        key = {"_id": f"{limit.name}|{digest}|{int(start)}"}
        update = {"$inc": {"n": 1}, "$setOnInsert": {"schema_version": 1,
                                                   "until": datetime.fromtimestamp(start + self.window, UTC)}}
        try:  # the whole document comes back: the local store's findAndModify takes no projection
            doc = await self.col.find_one_and_update(key, update, upsert=True,
                                                     return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # two first hits raced to insert: the other one's document exists now
            doc = await self.col.find_one_and_update(key, update,
                                                     return_document=ReturnDocument.AFTER)
        if doc["n"] <= limit.requests:
            return None
        return max(1, math.ceil(start + self.window - now))

    async def sweep(self, *, now: float | None = None) -> None:
        """Drop the counters of windows that ended."""
        ended = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        await self.col.delete_many({"until": {"$lte": ended}})
