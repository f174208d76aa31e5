"""A grid wired to the in-memory adapters, the street-size demo city and its roster: handlers run
in milliseconds without Kafka or the store."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_grid.adapters.memory import MemoryCatalogue, MemoryRequests, MemoryRoster, MemoryStaff
from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.demo.roster import build_roster
from civicgrid_grid.handlers import Commands, GridContext
from civicgrid_runtime.bus import Delivery

LIMIT = 3
SOURCE = "/civicgrid/intake-test"


@functools.cache
def city():
    return generate("street", 3)


async def fake_grid() -> tuple[GridContext, Commands]:
    c = city()
    ctx = GridContext(source="/civicgrid/grid", requests=MemoryRequests(), staff=MemoryStaff(), roster=MemoryRoster(),
                      catalogue=MemoryCatalogue(), city=c)
    roster = build_roster(c, load_limit=LIMIT)
    await ctx.staff.upsert_many(roster["staff"])
    for kind in ("posts", "chain", "departments"):
        await ctx.roster.upsert(kind, roster[kind])
    return ctx, Commands(ctx)


def point_in(grid: str) -> Location:
    b = next(iter(city().buildings_of(grid, limit=1)))
    return Location(lat=b["lat"], lon=b["lon"])


def received(grid: str, **kw) -> Envelope:
    payload = RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=kw.pop("rid", f"req-{uuid.uuid4().hex[:12]}"),
        service_code=kw.pop("service_code", "repair"), service_name="Repair",
        time_limits=TimeLimits(response_hours=2, resolution_hours=48, report_back_hours=24),
        location=kw.pop("location", None) or point_in(grid), description="test", channel="web",
        received_at=kw.pop("received_at", datetime.now(UTC)), **kw)
    return Envelope.wrap(payload, source=SOURCE)


def delivered(*envs: Envelope, topic: str = "intake.requests.v1") -> list[Delivery]:
    return [Delivery(e, topic, 0, i) for i, e in enumerate(envs)]


def published(ctx: GridContext, rid: str, type_: str | None = None) -> list[Envelope]:
    return [e for e in ctx.requests.published if e.subject == rid and (type_ is None or e.type == type_)]
