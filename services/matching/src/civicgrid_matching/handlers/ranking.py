"""The next candidates for a match: ranked in memory by the index, then the final few checked
against the volunteers' stored schedules (they may have been booked elsewhere meanwhile)."""

from __future__ import annotations

from civicgrid_matching.domain.match import Match, Shortlist
from civicgrid_matching.handlers.context import Matching


async def shortlist(ctx: Matching, match: Match, want: int) -> Shortlist:
    q = match.visit.query(ctx.settings.distance_limit_m)
    if q is None:
        return Shortlist([])
    if want <= 0:
        return Shortlist([], 0, "no further offer needed")
    res = ctx.index.match(q, limit=want + 4, exclude=set(match.asked))
    if not res.candidates:
        return Shortlist([], res.considered, res.reason())
    schedules = await ctx.store.schedules.many([c.volunteer_id for c in res.candidates])
    ok = []
    for c in res.candidates:
        sched = schedules[c.volunteer_id]
        cap = float(ctx.index.hours_cap[ctx.index.pos[c.volunteer_id]])
        if sched.conflict(match.request_id, q.start, q.hours, q.recurring, cap, ctx.tz) is None:
            c.rank = len(ok) + 1
            ok.append(c)
        else:
            ctx.index.set_bookings(c.volunteer_id, sched.active())
        if len(ok) >= want:
            break
    return Shortlist(ok, res.considered, res.reason() if ok else "no eligible volunteer left after checking bookings")


def shortlist_from_index(ctx: Matching, match: Match) -> Shortlist:
    """The first offers of a batch of new requests: the index alone (kept current from the store);
    the store re-checks the booking atomically when a volunteer accepts."""
    q = match.visit.query(ctx.settings.distance_limit_m)
    if q is None:
        return Shortlist([])
    res = ctx.index.match(q, limit=ctx.settings.offers_at_once)
    return Shortlist(res.candidates, res.considered, res.reason())
