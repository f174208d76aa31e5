"""Hours: the winner checks in and out and completes (ServiceDelivered); staff of the area where
the service was given (the entry's community, the request's) approve or correct."""

from __future__ import annotations

from civicgrid_matching.domain.errors import NotAssigned, NotCheckedIn, NotFound
from civicgrid_matching.domain.hours import HoursEntry, entry_id
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.schedule import BOOKED
from civicgrid_matching.domain.scope import AreaScope
from civicgrid_matching.handlers import bookings, registry
from civicgrid_matching.handlers.context import Matching, until_saved


async def assignment(ctx: Matching, vid: str, rid: str) -> Match:
    m = await ctx.store.matches.get(rid)
    if m is None:
        raise NotAssigned("You are not the volunteer of this request")
    m.assignment_of(vid)
    return m


async def check_in(ctx: Matching, vid: str, rid: str) -> HoursEntry:
    m = await assignment(ctx, vid, rid)
    e = HoursEntry.check_in(m, vid, ctx.clock(), ctx.tz)
    if await ctx.store.hours.add(e):
        return e
    return await ctx.store.hours.get(e.id)  # checked in before: the first check-in stands


async def _entry(ctx: Matching, vid: str, rid: str) -> HoursEntry:
    e = await ctx.store.hours.get(entry_id(rid, vid))
    if e is None:
        raise NotCheckedIn("Check in first")
    return e


async def check_out(ctx: Matching, vid: str, rid: str) -> HoursEntry:
    await assignment(ctx, vid, rid)

    async def attempt() -> HoursEntry | None:
        e = await _entry(ctx, vid, rid)
        if not e.check_out(ctx.clock()):
            return e
        return e if await ctx.store.hours.save(e) else None

    return await until_saved(attempt, "The hours entry")


async def complete(ctx: Matching, vid: str, rid: str, note: str | None) -> HoursEntry:
    m = await assignment(ctx, vid, rid)

    async def attempt() -> tuple[HoursEntry, bool] | None:
        e = await _entry(ctx, vid, rid)
        if not e.complete(m, note, ctx.clock()):
            return e, False
        return (e, True) if await ctx.store.hours.save(e) else None

    e, changed = await until_saved(attempt, "The hours entry")
    if changed:
        async def delivered() -> bool | None:
            m = await assignment(ctx, vid, rid)
            m.delivered()
            return True if await ctx.store.matches.save(m) else None

        await until_saved(delivered, f"The match of {rid}")
        await bookings.settle(ctx, vid, rid, BOOKED, hours=e.hours)
        await registry.count(ctx, vid, "completed")
    return e


async def _staff_change(ctx: Matching, eid: str, change, scope: AreaScope) -> HoursEntry:
    async def attempt() -> HoursEntry | None:
        e = await ctx.store.hours.get(eid)
        if e is None:
            raise NotFound("No such hours entry")
        scope.require(e.community, f"Hours entry {eid}")
        change(e)
        return e if await ctx.store.hours.save(e) else None

    return await until_saved(attempt, "The hours entry")


async def approve(ctx: Matching, eid: str, staff: str, *, scope: AreaScope) -> HoursEntry:
    return await _staff_change(ctx, eid, lambda e: e.approve(staff, ctx.clock()), scope)


async def correct(ctx: Matching, eid: str, staff: str, hours: float, reason: str, *, scope: AreaScope) -> HoursEntry:
    """A correction never deletes: the old figure stays in the entry's history."""
    e = await _staff_change(ctx, eid, lambda e: e.correct(staff, hours, reason, ctx.clock()), scope)
    await bookings.settle(ctx, e.volunteer_id, e.request_id, BOOKED, hours=hours)
    return e


async def record_rating(ctx: Matching, rid: str, vid: str, rating: str) -> None:
    async def attempt() -> bool | None:
        e = await ctx.store.hours.get(entry_id(rid, vid))
        if e is None or not e.rate(rating):
            return True
        return True if await ctx.store.hours.save(e) else None

    await until_saved(attempt, "The hours entry")
