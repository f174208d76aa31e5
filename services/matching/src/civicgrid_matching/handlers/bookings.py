"""Volunteers' schedules: hold a slot for an accept, confirm or release it, settle what a crash
left held. Every change is one version-guarded save of the volunteer's schedule."""

from __future__ import annotations

from datetime import datetime, timedelta

from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.model import as_utc
from civicgrid_matching.domain.schedule import BOOKED, RELEASED, Schedule
from civicgrid_matching.handlers.context import Matching, until_saved
from civicgrid_matching.handlers.sync import schedule_changed


async def hold(ctx: Matching, volunteer_id: str, match: Match, cap: float) -> Schedule:
    """Hold the match's slot in the volunteer's schedule (raises DoubleBooked / HoursCapExceeded)."""
    v = match.visit

    async def attempt() -> Schedule | None:
        s = await ctx.store.schedules.get(volunteer_id)
        if not s.hold(match.request_id, as_utc(v.needed_from), v.needed_hours, v.recurring, cap, ctx.tz, ctx.clock()):
            return s
        return s if await ctx.store.schedules.save(s) else None

    s = await until_saved(attempt, f"The schedule of {volunteer_id}")
    schedule_changed(ctx, s)
    return s


async def settle(ctx: Matching, volunteer_id: str, request_id: str, state: str, hours: float | None = None) -> None:
    async def attempt() -> Schedule | None:
        s = await ctx.store.schedules.get(volunteer_id)
        if not s.settle(request_id, state, ctx.clock(), hours):
            return s
        return s if await ctx.store.schedules.save(s) else None

    schedule_changed(ctx, await until_saved(attempt, f"The schedule of {volunteer_id}"))


async def reconcile_holds(ctx: Matching, older_than: timedelta = timedelta(minutes=2)) -> int:
    """Settle slot holds an accept left behind when it died between holding and claiming."""
    cutoff: datetime = ctx.clock() - older_than
    n = 0
    for s in await ctx.store.schedules.with_holds():
        for b in s.stale_holds(cutoff):
            m = await ctx.store.matches.get(b.request_id)
            won = m is not None and m.winner == s.volunteer_id
            await settle(ctx, s.volunteer_id, b.request_id, BOOKED if won else RELEASED)
            n += 1
    return n
