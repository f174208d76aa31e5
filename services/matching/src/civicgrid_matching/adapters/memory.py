"""The in-memory fake of the storage port, for fast unit tests: the same rules as the MongoDB
adapter (version-guarded saves, unique-id claims, newer catalogue revision wins), aggregates copied
in and out so a test cannot change stored state by accident, and every published event kept in
``published`` in order."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from civicgrid_contracts import Envelope
from civicgrid_matching.domain.catalogue import ServiceInfo
from civicgrid_matching.domain.errors import AlreadyRegistered
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.match import OPEN, Match
from civicgrid_matching.domain.model import as_utc
from civicgrid_matching.domain.schedule import HELD, Schedule
from civicgrid_matching.domain.volunteer import Volunteer


class _Table:
    def __init__(self, store: MemoryStore, key: str) -> None:
        self.store, self.key = store, key
        self.rows: dict[str, Any] = {}

    def _out(self, row: Any) -> Any:
        return copy.deepcopy(row) if row is not None else None

    def _claim(self, agg: Any) -> bool:
        k = getattr(agg, self.key)
        if k in self.rows:
            return False
        agg.version = 1
        self._keep(agg)
        return True

    def _save(self, agg: Any) -> bool:
        k = getattr(agg, self.key)
        stored = self.rows.get(k)
        if stored is None or stored.version != agg.version:
            return False
        agg.version += 1
        self._keep(agg)
        return True

    def _keep(self, agg: Any) -> None:
        events = getattr(agg, "events", None)
        if events:
            self.store.published.extend(r.envelope(self.store.source) for r in events)
            events.clear()
        row = copy.deepcopy(agg)
        self.rows[getattr(agg, self.key)] = row


class MemoryMatches(_Table):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store, "request_id")
        self.first_events: dict[str, list[Envelope]] = {}

    async def get(self, request_id: str) -> Match | None:
        return self._out(self.rows.get(request_id))

    async def add_new(self, matches: Sequence[Match], *, crash_point: str | None = None) -> set[str]:
        inserted = set()
        for m in matches:
            if m.request_id in self.rows:
                self.store.published.extend(self.first_events[m.request_id])
                continue
            self.first_events[m.request_id] = [r.envelope(self.store.source) for r in m.events]
            self._claim(m)
            inserted.add(m.request_id)
        return inserted

    async def save(self, match: Match, *, crash_point: str | None = None) -> bool:
        return self._save(match)

    async def offered_to(self, volunteer_id: str) -> list[Match]:
        return [self._out(m) for m in self.rows.values() if volunteer_id in m.offered_to and m.status == OPEN]

    async def due(self, now: datetime, limit: int) -> list[str]:
        due = [m for m in self.rows.values() if m.next_expiry and as_utc(m.next_expiry) <= now]
        return [m.request_id for m in sorted(due, key=lambda m: m.next_expiry)][:limit]

    async def requeue(self, request_id: str, at: datetime | None) -> None:
        return None  # the fake reads the matches themselves


class MemorySchedules(_Table):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store, "volunteer_id")

    async def get(self, volunteer_id: str) -> Schedule:
        return self._out(self.rows.get(volunteer_id)) or Schedule(volunteer_id)

    async def many(self, volunteer_ids: Sequence[str]) -> dict[str, Schedule]:
        return {i: await self.get(i) for i in volunteer_ids}

    async def save(self, schedule: Schedule) -> bool:
        return self._claim(schedule) if schedule.version == 0 else self._save(schedule)

    async def changed_since(self, t: datetime | None) -> list[Schedule]:
        return [self._out(s) for s in self.rows.values() if t is None or (s.updated_at and s.updated_at >= t)]

    async def with_holds(self) -> list[Schedule]:
        return [self._out(s) for s in self.rows.values() if any(b.state == HELD for b in s.bookings)]


class MemoryVolunteers(_Table):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store, "id")

    async def get(self, volunteer_id: str) -> Volunteer | None:
        return self._out(self.rows.get(volunteer_id))

    async def add(self, volunteer: Volunteer) -> None:
        if not self._claim(volunteer):
            raise AlreadyRegistered(f"Volunteer {volunteer.id} is already registered")

    async def save(self, volunteer: Volunteer) -> bool:
        return self._save(volunteer)

    async def changed_since(self, t: datetime | None) -> list[Volunteer]:
        return [self._out(v) for v in self.rows.values() if t is None or v.updated_at >= t]

    def _within(self, prefix: str) -> list[Volunteer]:
        return sorted((v for v in self.rows.values() if v.community.startswith(prefix)), key=lambda v: v.id)

    async def page(self, community: str | None, skip: int, limit: int, *, within: str = "") -> list[Volunteer]:
        rows = [v for v in self._within(within) if community is None or v.community == community]
        return [self._out(v) for v in rows[skip:skip + limit]]

    async def many(self, volunteer_ids: Sequence[str]) -> dict[str, Volunteer]:
        return {i: self._out(self.rows[i]) for i in volunteer_ids if i in self.rows}

    async def members_of(self, work_unit: str, *, within: str = "") -> list[Volunteer]:
        return [self._out(v) for v in self._within(within) if v.work_unit == work_unit and v.party_member]

    async def work_units(self, *, within: str = "") -> list[str]:
        return sorted({v.work_unit for v in self._within(within) if v.work_unit})


class MemoryHours(_Table):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store, "id")

    async def get(self, entry_id: str) -> HoursEntry | None:
        return self._out(self.rows.get(entry_id))

    async def add(self, entry: HoursEntry) -> bool:
        return self._claim(entry)

    async def save(self, entry: HoursEntry) -> bool:
        return self._save(entry)

    async def of_volunteer(self, volunteer_id: str, month: str | None = None) -> list[HoursEntry]:
        return [self._out(e) for e in sorted(self.rows.values(), key=lambda e: e.check_in_at)
                if e.volunteer_id == volunteer_id and (month is None or e.month == month)]

    async def of_month(self, month: str) -> list[HoursEntry]:
        return [self._out(e) for e in sorted(self.rows.values(), key=lambda e: e.check_in_at) if e.month == month]


class MemoryCatalogue:
    def __init__(self) -> None:
        self.rows: dict[str, ServiceInfo] = {}

    async def put(self, service: ServiceInfo) -> ServiceInfo:
        stored = self.rows.get(service.code)
        if stored is None or stored.revision < service.revision:
            self.rows[service.code] = copy.deepcopy(service)
        return copy.deepcopy(self.rows[service.code])

    async def all(self) -> list[ServiceInfo]:
        return [copy.deepcopy(s) for s in self.rows.values()]


class MemoryStore:
    def __init__(self, source: str = "/civicgrid/matching") -> None:
        self.source = source
        self.published: list[Envelope] = []
        self.matches = MemoryMatches(self)
        self.schedules = MemorySchedules(self)
        self.volunteers = MemoryVolunteers(self)
        self.hours = MemoryHours(self)
        self.catalogue = MemoryCatalogue()
