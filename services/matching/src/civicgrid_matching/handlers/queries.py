"""The read side: offers waiting for a volunteer, a match with its ranking explained, records and
reports. Reads only; the HTTP views shape what these return."""

from __future__ import annotations

from civicgrid_matching.domain import reports, scoring
from civicgrid_matching.domain.errors import NotFound
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.index import why_text
from civicgrid_matching.domain.match import Match
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


async def match(ctx: Matching, rid: str) -> Match:
    m = await ctx.store.matches.get(rid)
    if m is None:
        raise NotFound(f"No match for request {rid}")
    return m


def formula(ctx: Matching, recurring: bool) -> str:
    return scoring.formula(ctx.index.weights, recurring)


async def volunteers(ctx: Matching, community: str | None, skip: int, limit: int) -> list[Volunteer]:
    return await ctx.store.volunteers.page(community, skip, limit)


async def hours_of(ctx: Matching, vid: str) -> list[HoursEntry]:
    return await ctx.store.hours.of_volunteer(vid)


async def certificate(ctx: Matching, vid: str) -> dict:
    vol = await registry.get(ctx, vid)
    return reports.certificate(vol, await ctx.store.hours.of_volunteer(vid), ctx.clock())


async def service_times(ctx: Matching, month: str) -> dict:
    entries = await ctx.store.hours.of_month(month)
    vols = await ctx.store.volunteers.many(sorted({e.volunteer_id for e in entries}))
    return reports.service_times(entries, vols, month)


async def work_units(ctx: Matching) -> list[str]:
    return await ctx.store.volunteers.work_units()


async def work_unit_report(ctx: Matching, unit: str, month: str) -> dict:
    members = await ctx.store.volunteers.members_of(unit)
    entries = [e for v in members for e in await ctx.store.hours.of_volunteer(v.id, month)]
    return reports.work_unit_report(unit, members, entries, month)
