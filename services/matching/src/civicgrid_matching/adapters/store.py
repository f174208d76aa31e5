"""Store repositories of matching: collection names, indexes and the per-volunteer schedule with its
atomic booking guard (optimistic version check in the update filter: two concurrent bookings of the
same volunteer can never both succeed, so a volunteer is never double-booked)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from civicgrid_matching.domain.model import DomainError, booked_hours_in_week, key_safe, overlaps, week_key

PRUNE_AFTER = timedelta(days=35)


@dataclass
class Collections:
    db: AsyncDatabase

    @property
    def volunteers(self):
        return self.db["volunteers"]

    @property
    def schedules(self):
        return self.db["schedules"]

    @property
    def matches(self):
        return self.db["matches"]

    @property
    def offers(self):
        return self.db["offers"]

    @property
    def hours(self):
        return self.db["hours"]

    @property
    def services(self):
        return self.db["services"]

    async def ensure_indexes(self) -> None:
        await self.volunteers.create_index([("updated_at", 1)], name="updated_at")
        await self.volunteers.create_index([("community", 1)], name="community")
        await self.volunteers.create_index([("work_unit", 1)], name="work_unit")
        await self.schedules.create_index([("updated_at", 1)], name="updated_at")
        await self.matches.create_index([("status", 1), ("next_expiry", 1)], name="open_expiry")
        await self.offers.create_index([("volunteer_id", 1), ("status", 1)], name="volunteer_status")
        await self.hours.create_index([("volunteer_id", 1)], name="volunteer")
        await self.hours.create_index([("month", 1)], name="month")


def active_bookings(doc: dict | None) -> list[dict]:
    return [b for b in ((doc or {}).get("busy") or {}).values() if b.get("state") != "released"]


class Schedules:
    """One document per volunteer: ``busy`` (request key -> booking) and a version ``v``."""

    def __init__(self, cols: Collections, tz: ZoneInfo) -> None:
        self.col = cols.schedules
        self.tz = tz

    async def get(self, volunteer_id: str) -> dict | None:
        return await self.col.find_one({"_id": volunteer_id})

    async def many(self, ids: list[str]) -> dict[str, dict]:
        docs = await self.col.find({"_id": {"$in": ids}}).to_list(None)
        return {d["_id"]: d for d in docs}

    def conflict(self, doc: dict | None, request_id: str, start: datetime, hours: float, weekly: bool,
                 cap: float) -> str | None:
        """Why this volunteer cannot take the booking, or None."""
        others = [b for b in active_bookings(doc) if b["r"] != request_id]
        for b in others:
            if overlaps(b["s"], b["h"], b.get("w", False), start, hours, weekly):
                return "double_booked"
        if booked_hours_in_week(others, week_key(start, self.tz), self.tz) + hours > cap + 1e-9:
            return "hours_cap"
        return None

    async def reserve(self, volunteer_id: str, request_id: str, start: datetime, hours: float, weekly: bool,
                      cap: float, *, state: str = "held") -> dict:
        """Atomically add a booking unless it overlaps another or breaks the weekly cap."""
        rk = key_safe(request_id)
        for _ in range(50):
            doc = await self.get(volunteer_id)
            existing = ((doc or {}).get("busy") or {}).get(rk)
            if existing and existing.get("state") in ("held", "booked"):
                return doc
            why = self.conflict(doc, request_id, start, hours, weekly, cap)
            if why == "double_booked":
                raise DomainError("double_booked", "The volunteer already has a booking at an overlapping time")
            if why == "hours_cap":
                raise DomainError("hours_cap", "This would take the volunteer over their weekly hours cap")
            now = datetime.now(UTC)
            entry = {"r": request_id, "s": start, "h": hours, "w": weekly, "state": state, "at": now}
            prune = {f"busy.{k}": "" for k, b in ((doc or {}).get("busy") or {}).items()
                     if not b.get("w") and b["s"].replace(tzinfo=UTC) < now - PRUNE_AFTER}
            if doc is None:
                try:
                    await self.col.insert_one({"_id": volunteer_id, "v": 1, "busy": {rk: entry}, "updated_at": now})
                    return await self.get(volunteer_id)
                except DuplicateKeyError:
                    continue
            update = {"$set": {f"busy.{rk}": entry, "updated_at": now}, "$inc": {"v": 1}}
            if prune:
                update["$unset"] = prune
            res = await self.col.update_one({"_id": volunteer_id, "v": doc["v"]}, update)
            if res.modified_count == 1:
                return await self.get(volunteer_id)
        raise DomainError("busy", "The volunteer's schedule is changing too fast; retry", status=503)

    async def set_state(self, volunteer_id: str, request_id: str, state: str, hours: float | None = None) -> None:
        rk = key_safe(request_id)
        fields = {f"busy.{rk}.state": state, "updated_at": datetime.now(UTC)}
        if hours is not None:
            fields[f"busy.{rk}.h"] = hours
        await self.col.update_one({"_id": volunteer_id, f"busy.{rk}": {"$exists": True}},
                                  {"$set": fields, "$inc": {"v": 1}})
