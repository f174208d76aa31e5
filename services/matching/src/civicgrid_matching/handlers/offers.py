"""Volunteers answer offers (accept, decline); the expiry job closes offers past their time;
staff report a volunteer who did not come. Each asks the next candidates where one is missing."""

from __future__ import annotations

from datetime import datetime

from civicgrid_matching.domain.errors import MatchingError, NotFound
from civicgrid_matching.domain.match import OPEN, Match, request_of
from civicgrid_matching.domain.schedule import BOOKED, RELEASED
from civicgrid_matching.domain.scope import DISTRICT, AreaScope
from civicgrid_matching.handlers import bookings, registry
from civicgrid_matching.handlers.context import Matching, until_saved
from civicgrid_matching.handlers.ranking import shortlist

#: matches expired per run of the job (the rest wait for the next run, a second later)
EXPIRY_BATCH = 200


async def load(ctx: Matching, request_id: str) -> Match:
    m = await ctx.store.matches.get(request_id)
    if m is None:
        raise NotFound(f"No match for request {request_id}")
    return m


async def accept(ctx: Matching, vid: str, oid: str) -> Match:
    """First accept wins: hold the slot in the volunteer's schedule, claim the match, then confirm
    the booking (or release it when another volunteer won meanwhile)."""
    rid = request_of(oid)
    m = await ctx.store.matches.get(rid)
    if m is None:
        raise NotFound("No such offer for you")
    if m.winner == vid and m.offer(oid, vid).status == "accepted":
        return m  # the same accept again: nothing changes
    m.check_acceptable(vid, oid, ctx.clock())
    vol = await registry.get(ctx, vid, scope=DISTRICT)
    await bookings.hold(ctx, vid, m, float(vol.weekly_hours_cap))

    async def claim() -> Match | None:
        m = await load(ctx, rid)
        if not m.accept(vid, oid, ctx.clock()):
            return m  # this volunteer won already (a concurrent repeat of the accept)
        return m if await ctx.store.matches.save(m, crash_point="matching.after_accept_claim") else None

    try:
        m = await until_saved(claim, f"The match of {rid}")
    except MatchingError:
        await bookings.settle(ctx, vid, rid, RELEASED)
        raise
    await bookings.settle(ctx, vid, rid, BOOKED)
    if m.visit.resident_ref:
        ref = m.visit.resident_ref
        await registry.change_volunteer(ctx, vid, lambda v: v.starts_serving(ref, rid, ctx.clock()),
                                        scope=DISTRICT)
    return m


async def decline(ctx: Matching, vid: str, oid: str, reason: str | None) -> Match:
    rid = request_of(oid)

    async def attempt() -> tuple[Match, bool] | None:
        m = await ctx.store.matches.get(rid)
        if m is None:
            raise NotFound("No such offer for you")
        o = m.offer(oid, vid)
        nxt = await shortlist(ctx, m, m.shortfall({oid}, ctx.settings.offers_at_once) if o.open else 0)
        if not m.decline(vid, oid, reason, ctx.clock(), nxt, ctx.ttl):
            return m, False
        return (m, True) if await ctx.store.matches.save(m) else None

    m, changed = await until_saved(attempt, f"The match of {rid}")
    if changed:
        await registry.count(ctx, vid, "declines")
    return m


async def expire_offers(ctx: Matching, now: datetime | None = None) -> int:
    """Periodic job: expire offers past their time and ask the next candidates."""
    now = now or ctx.clock()
    n = 0
    for rid in await ctx.store.matches.due(now, EXPIRY_BATCH):
        n += await expire(ctx, rid, now)
    return n


async def expire(ctx: Matching, rid: str, now: datetime) -> int:
    async def attempt() -> list[str] | None:
        m = await ctx.store.matches.get(rid)
        if m is None or m.status != OPEN:
            await ctx.store.matches.requeue(rid, None)
            return []
        gone = m.expired(now)
        if not gone:  # the queue's entry went stale (a crash between the two writes)
            await ctx.store.matches.requeue(rid, m.next_expiry)
            return []
        nxt = await shortlist(ctx, m, m.shortfall(gone, ctx.settings.offers_at_once))
        vids = m.expire(now, nxt, ctx.ttl)
        return vids if await ctx.store.matches.save(m) else None

    vids = await until_saved(attempt, f"The match of {rid}")
    for vid in vids:
        await registry.count(ctx, vid, "expiries")
    return len(vids)


async def no_show(ctx: Matching, rid: str, staff: str, *, scope: AreaScope) -> Match:
    """Staff of the request's area report that the accepted volunteer did not come: reliability
    drops, others are asked."""
    async def attempt() -> tuple[Match, str] | None:
        m = await load(ctx, rid)
        scope.require(m.visit.community, f"Request {rid}")
        if not m.winner:
            raise NotFound("No accepted volunteer on this request")
        nxt = await shortlist(ctx, m, m.shortfall(set(), ctx.settings.offers_at_once))
        vid = m.report_no_show(staff, ctx.clock(), nxt, ctx.ttl)
        return (m, vid) if await ctx.store.matches.save(m) else None

    m, vid = await until_saved(attempt, f"The match of {rid}")
    await bookings.settle(ctx, vid, rid, RELEASED)
    await registry.count(ctx, vid, "no_shows")
    return m
