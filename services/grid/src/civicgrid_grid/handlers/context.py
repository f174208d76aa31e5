"""What every handler works with (built once, in bootstrap), and the one way a change of a
request is applied: load, change the aggregate, save with its events (version-guarded), give back
the load the change released."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR, WorkingCalendar
from civicgrid_grid.domain.citymap import CityMap
from civicgrid_grid.domain.errors import ChangedMeanwhile
from civicgrid_grid.domain.ports import CatalogueStore, RequestStore, RosterStore, StaffStore
from civicgrid_grid.domain.request import RequestCase

#: a change that lost to a concurrent writer is tried again this many times, each on a fresh read
ATTEMPTS = 5


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FixedCalendar:
    """A calendar that never changes (unit tests); the service follows the bus's."""

    calendar: WorkingCalendar = DEFAULT_CALENDAR


@dataclass
class GridContext:
    source: str
    requests: RequestStore
    staff: StaffStore
    roster: RosterStore
    catalogue: CatalogueStore
    #: the working calendar of the bus (``.calendar``): department report-back deadlines are set on it
    calendar: Any = field(default_factory=FixedCalendar)
    default_report_back_hours: float = 72.0
    #: the district's time zone: a leave "until 2026-11-28" ends at the end of that day there
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    city: CityMap | None = None

    def require_city(self) -> CityMap:
        if self.city is None:
            raise RuntimeError("no map loaded: import a map (civicgrid-grid import / load-demo) first")
        return self.city


def envelopes(ctx: GridContext, case: RequestCase, cause: Envelope | None = None) -> list[Envelope]:
    """The events the case recorded, as envelopes: caused by ``cause`` (deterministic ids, so a
    redelivered cause makes the same events), or a staff action's first event and what it caused."""
    payloads, case.events = case.events, []
    if cause is not None:
        return [cause.caused(p, source=ctx.source) for p in payloads]
    if not payloads:
        return []
    first = Envelope.wrap(payloads[0], source=ctx.source, correlation_id=case.correlation_id)
    return [first, *(first.caused(p, source=ctx.source) for p in payloads[1:])]


async def give_back_load(ctx: GridContext, case: RequestCase) -> None:
    releases, case.releases = case.releases, []
    for sid in releases:
        await ctx.staff.release(sid, case.id)


async def apply_event(ctx: GridContext, cause: Envelope, change: Callable[[RequestCase], Awaitable[None]],
                      rid: str | None = None) -> RequestCase | None:
    """Apply an event from another service to its request, once (a redelivery changes nothing)."""
    for _attempt in range(ATTEMPTS):
        case = await ctx.requests.get(rid or cause.subject)
        if case is None or cause.id in case.applied:
            return None
        await change(case)
        if await ctx.requests.save(case, envelopes(ctx, case, cause), cause_id=cause.id):
            await give_back_load(ctx, case)
            return case
    raise ChangedMeanwhile(f"request {rid or cause.subject} kept changing while {cause.type} was applied")
