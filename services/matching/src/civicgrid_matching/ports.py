"""The storage port of matching: one repository per aggregate, behind one ``Store``.

The store has no multi-document transactions, so the unit of work is one aggregate: ``save``
writes one document, guarded by the version it was read at, together with the events the
aggregate recorded (the runtime's outbox publishes them, exactly once in effect). ``save``
returns False when someone else changed the document meanwhile; the handler reads it again and
retries. New documents are claimed by their unique ``_id``.

Two adapters implement it: ``adapters.mongo`` (the real store) and ``adapters.memory`` (the fake
the unit tests use); ``tests/contract`` runs the same assertions against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from civicgrid_matching.domain.catalogue import ServiceInfo
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.schedule import Schedule
from civicgrid_matching.domain.volunteer import Volunteer


class Matches(Protocol):
    async def get(self, request_id: str) -> Match | None: ...

    async def add_new(self, matches: Sequence[Match], *, crash_point: str | None = None) -> set[str]:
        """Insert matches of requests never seen, publishing their events; returns the ids
        inserted. For an id that exists, the events its first insert caused are published again
        (that insert may have died before its publish) and the caller applies the event to it."""
        ...

    async def save(self, match: Match, *, crash_point: str | None = None) -> bool: ...

    async def offered_to(self, volunteer_id: str) -> list[Match]: ...

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Ids of open matches whose next offer expiry is due."""
        ...

    async def requeue(self, request_id: str, at: datetime | None) -> None:
        """Set (or with None drop) the request's entry in the expiry queue, where it went stale."""
        ...


class Schedules(Protocol):
    async def get(self, volunteer_id: str) -> Schedule:
        """The volunteer's schedule (an empty, unsaved one if they have none)."""
        ...

    async def many(self, volunteer_ids: Sequence[str]) -> dict[str, Schedule]: ...

    async def save(self, schedule: Schedule) -> bool: ...

    async def changed_since(self, t: datetime | None) -> list[Schedule]: ...

    async def with_holds(self) -> list[Schedule]: ...


class Volunteers(Protocol):
    async def get(self, volunteer_id: str) -> Volunteer | None: ...

    async def add(self, volunteer: Volunteer) -> None:
        """Raises ``AlreadyRegistered`` when the id is taken."""
        ...

    async def save(self, volunteer: Volunteer) -> bool: ...

    async def changed_since(self, t: datetime | None) -> list[Volunteer]: ...

    async def page(self, community: str | None, skip: int, limit: int, *, within: str = "") -> list[Volunteer]:
        """Volunteers in id order, of ``community`` if given, and whose community code starts
        with ``within`` (an area scope's prefix; the ``community`` index serves both)."""
        ...

    async def many(self, volunteer_ids: Sequence[str]) -> dict[str, Volunteer]: ...

    async def members_of(self, work_unit: str, *, within: str = "") -> list[Volunteer]:
        """Party members working at ``work_unit`` (whose community starts with ``within``)."""
        ...

    async def work_units(self, *, within: str = "") -> list[str]:
        """The work units of volunteers whose community starts with ``within``."""
        ...


class HoursLog(Protocol):
    async def get(self, entry_id: str) -> HoursEntry | None: ...

    async def add(self, entry: HoursEntry) -> bool:
        """Claim the entry's id; False when it exists (a check-in repeated)."""
        ...

    async def save(self, entry: HoursEntry) -> bool: ...

    async def of_volunteer(self, volunteer_id: str, month: str | None = None) -> list[HoursEntry]: ...

    async def of_month(self, month: str) -> list[HoursEntry]: ...


class Catalogue(Protocol):
    async def put(self, service: ServiceInfo) -> ServiceInfo:
        """Store the definition unless a newer revision is stored; returns what is stored."""
        ...

    async def all(self) -> list[ServiceInfo]: ...


class Store(Protocol):
    matches: Matches
    schedules: Schedules
    volunteers: Volunteers
    hours: HoursLog
    catalogue: Catalogue
