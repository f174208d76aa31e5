"""Staff access to personal data and administrative changes, as audit keeps them (``staff.access.v1``).

The events are in the tamper-evident trail like every other (the projector appends them first);
this index lists them per staff member and per request or administered object for auditors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_contracts import topics
from civicgrid_runtime.bus import Delivery

ACCESS_TYPES = frozenset(topics.STAFF_ACCESS.event_types)
COLLECTION = "staff_access"


class StaffAccessIndex:
    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self.col.create_index([("staff_id", ASCENDING), ("at", ASCENDING)], name="by_staff")
        await self.col.create_index([("subject", ASCENDING), ("at", ASCENDING)], name="by_subject")

    async def apply(self, deliveries: Sequence[Delivery]) -> None:
        """Index each event once (a redelivery finds its ``_id`` and changes nothing)."""
        ops = []
        for d in deliveries:
            env = d.envelope
            data = env.data.model_dump(mode="json", exclude={"request_id"})
            ops.append(UpdateOne({"_id": env.id}, {"$setOnInsert": {
                "type": env.type, "subject": env.subject, "at": env.time, "source": env.source, **data}},
                upsert=True))
        await self.col.bulk_write(ops, ordered=False)

    async def list(self, *, staff_id: str | None = None, subject: str | None = None,
                   limit: int = 200) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("staff_id", staff_id), ("subject", subject)) if v is not None}
        docs = await self.col.find(query).sort("at", ASCENDING).limit(limit).to_list(None)
        return [{"event_id": d.pop("_id"), **d} for d in docs]
