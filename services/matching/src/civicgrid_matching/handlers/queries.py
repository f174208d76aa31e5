"""The read side: offers waiting for a volunteer, a match with its ranking explained, records and
reports. Reads only; the HTTP views shape what these return.

Staff read within their area scope (``domain.scope``): a record outside it is refused, lists,
reports and a preview's candidates are narrowed to it."""

from __future__ import annotations

from civicgrid_matching.domain import reports, scoring
from civicgrid_matching.domain.errors import NotFound
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.index import MatchQuery, MatchResult, why_text
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.scope import AreaScope
from civicgrid_matching.domain.volunteer import Volunteer
from civicgrid_matching.handlers import registry
from civicgrid_matching.handlers.context import Matching


async def my_offers(ctx: Matching, vid: str) -> list[dict]:
    out = []
    for m in await ctx.store.matches.offered_to(vid):
        for o in m.open_offers:
            if o.volunteer_id != vid or m.winner:
                continue
            v = m.visit
            out.append({"offer_id": o.offer_id, "request_id": m.request_id, "service_code": v.service_code,
                        "needed_from": v.needed_from, "needed_hours": v.needed_hours,
                        "recurring_weekly": v.recurring, "community": v.community, "distance_m": o.distance_m,
                        "rank": o.rank, "why": why_text(o.rank, o.score, o.distance_m, o.components),
                        "expires_at": o.expires_at})
    return out


async def match(ctx: Matching, rid: str, *, scope: AreaScope) -> Match:
    """The match of request ``rid``, for staff of the area the request is located in."""
    m = await ctx.store.matches.get(rid)
    if m is None:
        raise NotFound(f"No match for request {rid}")
    scope.require(m.visit.community, f"Request {rid}")
    return m


def formula(ctx: Matching, recurring: bool) -> str:
    return scoring.formula(ctx.index.weights, recurring)


async def volunteers(ctx: Matching, community: str | None, skip: int, limit: int, *,
                     scope: AreaScope) -> list[Volunteer]:
    """The registry's page within ``scope``; asking for a community outside it is refused."""
    if community:
        scope.require(community, "The community asked for")
    return await ctx.store.volunteers.page(community, skip, limit, within=scope.prefix)


async def hours_of(ctx: Matching, vid: str) -> list[HoursEntry]:
    """A volunteer's own hours entries."""
    return await ctx.store.hours.of_volunteer(vid)


async def volunteer_hours(ctx: Matching, vid: str, *, scope: AreaScope) -> list[HoursEntry]:
    """A volunteer's hours entries, for staff of the volunteer's area."""
    await registry.get(ctx, vid, scope=scope)
    return await ctx.store.hours.of_volunteer(vid)


async def certificate(ctx: Matching, vid: str, *, scope: AreaScope) -> dict:
    vol = await registry.get(ctx, vid, scope=scope)
    return reports.certificate(vol, await ctx.store.hours.of_volunteer(vid), ctx.clock())


async def preview(ctx: Matching, q: MatchQuery, limit: int, *, scope: AreaScope) -> MatchResult:
    """Rank volunteers for a hypothetical request. Candidates from outside ``scope`` are left out
    (counted in the funnel as ``outside_your_area``): distances from chosen points would tell
    where they live."""
    res = ctx.index.match(q, limit=limit)
    if scope.district_wide:
        return res
    homes = await ctx.store.volunteers.many([c.volunteer_id for c in res.candidates])
    kept = [c for c in res.candidates if c.volunteer_id in homes and scope.covers(homes[c.volunteer_id].community)]
    return MatchResult(kept, {**res.funnel, "outside_your_area": len(res.candidates) - len(kept)})


async def service_times(ctx: Matching, month: str, *, scope: AreaScope) -> dict:
    """The month's services given in ``scope`` (where the requests were)."""
    entries = [e for e in await ctx.store.hours.of_month(month) if scope.covers(e.community)]
    vols = await ctx.store.volunteers.many(sorted({e.volunteer_id for e in entries}))
    return reports.service_times(entries, vols, month)


async def work_units(ctx: Matching, *, scope: AreaScope) -> list[str]:
    return await ctx.store.volunteers.work_units(within=scope.prefix)


async def work_unit_report(ctx: Matching, unit: str, month: str, *, scope: AreaScope) -> dict:
    """How the unit's party members who live in ``scope`` served."""
    members = await ctx.store.volunteers.members_of(unit, within=scope.prefix)
    entries = [e for v in members for e in await ctx.store.hours.of_volunteer(v.id, month)]
    return reports.work_unit_report(unit, members, entries, month)
