"""The working calendar as the street office maintains it: one document per year in
``calendar_years``, every change published as ``CalendarYearDefined`` through the outbox.

A year's calendar is replaced as a whole; a version with any defect is refused as a whole, naming
each defect, and nothing changes. The calendar every process computes with is the one it follows on
the bus (``civicgrid_runtime.calendar``): this component only writes and publishes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from civicgrid_contracts import Envelope, derived_event_id
from civicgrid_contracts.calendar import CalendarYear, calendar_defects
from civicgrid_contracts.events.calendar import CalendarYearDefined
from civicgrid_intake.domain.errors import Conflict, InvalidRequest
from civicgrid_intake.domain.revisions import require_revision
from civicgrid_runtime.calendar import CalendarFollower
from civicgrid_runtime.store import OutboxRelay, update_with_events

SCHEMA_VERSION = 1


def year_event(defined: CalendarYearDefined, *, source: str) -> Envelope:
    eid = derived_event_id(f"calendar:{defined.calendar.year}", CalendarYearDefined.event_type,
                           str(defined.revision))
    return Envelope.wrap(defined, source=source, event_id=eid, time=defined.changed_at)


class CalendarYears:
    def __init__(self, col: AsyncCollection, relay: OutboxRelay | None, follower: CalendarFollower | None, *,
                 source: str) -> None:
        self.col = col
        self.relay = relay
        self.follower = follower
        self.source = source

    async def _stored_revision(self, year: int) -> int:
        current = await self.col.find_one({"_id": str(year)}, {"revision": 1})
        return (current or {}).get("revision", 0)

    def _revision_on_bus(self, year: int) -> int:
        # the bus's revision counts too: a version the followers hold (e.g. published by an intake
        # whose database was since replaced) must never be outnumbered by an older one
        return self.follower.versions[year].revision if self.follower and year in self.follower.versions else 0

    async def set_year(self, cal: CalendarYear, *, by: str, expected: int | None = None) -> CalendarYearDefined:
        """Store and publish a new version of ``cal.year``'s calendar (revision = the last + 1).
        ``expected``: the revision the administrator's version was made on (If-Match; 0: a year not
        defined yet); None saves over whatever is there (ADR 0903)."""
        defects = calendar_defects(cal)
        if defects:
            raise InvalidRequest(f"The calendar of {cal.year} has {len(defects)} defect(s); nothing was changed.",
                                 errors=defects)
        key = str(cal.year)
        revision = await self._stored_revision(cal.year)
        latest = max(revision, self._revision_on_bus(cal.year))
        require_revision(f"the calendar of {cal.year}", latest, expected)
        defined = CalendarYearDefined(request_id=key, calendar=cal, revision=latest + 1,
                                      changed_at=datetime.now(UTC), changed_by=by)
        doc = await update_with_events(
            self.col, self.relay, filter={"_id": key, "revision": revision}, upsert=revision == 0,
            update={"$set": {"schema_version": SCHEMA_VERSION, "year": cal.year, "revision": defined.revision,
                             "calendar": cal.model_dump(mode="json"), "changed_at": defined.changed_at,
                             "changed_by": by}},
            events=[year_event(defined, source=self.source)])
        if doc is None:
            if expected is not None:  # another save came between: the If-Match no longer holds
                require_revision(f"the calendar of {cal.year}", max(await self._stored_revision(cal.year),
                                                                    self._revision_on_bus(cal.year)), expected)
            raise Conflict(f"the calendar of {cal.year} changed meanwhile; read it again and retry", field="year")
        if self.follower is not None:  # this process computes with it at once; the others when it arrives
            self.follower.apply(defined)
        return defined

    async def stored(self) -> list[dict[str, Any]]:
        return await self.col.find({}, {"_id": 0, "year": 1, "revision": 1, "changed_at": 1, "changed_by": 1}
                                   ).sort("year", 1).to_list(None)
