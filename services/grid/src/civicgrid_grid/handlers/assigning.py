"""Who gets a request, with its load reserved atomically: A, then B, then up the chain; and what
an assignment causes (a volunteer request, a department dispatch) as the service needs."""

from __future__ import annotations

import uuid
from datetime import datetime

from civicgrid_contracts.calendar import due_at
from civicgrid_contracts.values import AreaPath, Location
from civicgrid_grid.domain.assignment import Candidate, plan, reason_text
from civicgrid_grid.domain.citymap import Located
from civicgrid_grid.domain.request import Holder, RequestCase
from civicgrid_grid.handlers.context import GridContext, now

#: (request id, where it is, its line of work)
Item = tuple[str, Located, str]


def chain_keys(loc: Located) -> list[tuple[str, str]]:
    """(level, chain document id) from the grid up to the district."""
    return [(level, f"{level}:{getattr(loc, level)}") for level in ("grid", "community", "street", "district")
            if getattr(loc, level)]


def locate_request(city, location: Location) -> Located:
    return city.locate(lat=location.lat, lon=location.lon, building_id=location.building_id,
                       address_text=location.address_text)


def area_of(loc: Located) -> dict:
    return AreaPath(district=loc.district, street=loc.street, community=loc.community, grid=loc.grid,
                    building=loc.building).model_dump()


async def read_roster(ctx: GridContext, items: list[Item]) -> tuple[dict, dict]:
    """The posts and chain holders these requests may go to (usually from the roster's cache)."""
    grids = [loc.grid for _, loc, _ in items if loc.grid]
    keys = {k for _, loc, _ in items for _, k in chain_keys(loc)}
    posts = await ctx.roster.posts_for(grids, {line for _, _, line in items} | {"general"})
    return posts, await ctx.roster.chain_for(sorted(keys))


def staff_ids(roster: tuple[dict, dict]) -> list[str]:
    posts, chain = roster
    return sorted({sid for p in posts.values() for sid in (p.get("a"), p.get("b")) if sid} | set(chain.values()))


def _unlocated(loc: Located, reason: str, version: int) -> Holder:
    # the street's unlocated queue sees it
    return Holder(f"unlocated:{loc.street}", "unlocated", "street", reason, None, None, area_of(loc), loc.method,
                  version)


async def decide_many(ctx: GridContext, items: list[Item], today: datetime | None = None, *,
                      roster: tuple[dict, dict] | None = None,
                      staff_docs: dict[str, dict] | None = None) -> list[Holder]:
    """Assign each item and reserve its load. In rounds: every request asks its next available
    candidate at once, so a batch costs one guarded write per person per round."""
    city = ctx.require_city()
    at = today or now()
    today_d = at.astimezone(ctx.tz).date()
    roster = roster or await read_roster(ctx, items)
    posts, chain = roster
    if staff_docs is None:
        staff_docs = await ctx.staff.read_many(staff_ids(roster))
    staff = {sid: ctx.staff.staff_of(d) for sid, d in staff_docs.items()}
    cands: list[list[Candidate]] = []
    posts_of: list[dict | None] = []
    for _rid, loc, line in items:
        post = (posts.get((loc.grid, line)) or posts.get((loc.grid, "general"))) if loc.located else None
        ch = [(lvl, chain[k]) for lvl, k in chain_keys(loc) if k in chain] if loc.located else []
        cands.append(plan(post, staff, ch, today_d, at) if loc.located else [])
        posts_of.append(post)
    pos = [0] * len(items)
    skipped: list[list[str]] = [[] for _ in items]
    result: list[Holder | None] = [None] * len(items)

    def advance(i: int) -> Candidate | None:
        while pos[i] < len(cands[i]):
            c = cands[i][pos[i]]
            if not c.skip:
                return c
            skipped[i].append(f"{c.label} {c.skip}")
            pos[i] += 1
        return None

    while True:
        asking = [(i, c) for i in range(len(items)) if result[i] is None and (c := advance(i)) is not None]
        if not asking:
            break
        granted = await ctx.staff.reserve_many([(c.staff_id, items[i][0], c.limited) for i, c in asking],
                                               read=staff_docs)
        staff_docs = None  # later rounds read afresh
        for i, c in asking:
            rid, loc, _line = items[i]
            if (c.staff_id, rid) in granted:
                post = posts_of[i]
                result[i] = Holder(c.staff_id, c.holder, c.level, reason_text(c, skipped[i]), c.staff_id,
                                   post["_id"] if post else None, area_of(loc), loc.method, city.version)
            else:
                s = staff.get(c.staff_id)
                skipped[i].append(f"{c.label} at load limit ({s.limit if s else 0})")
                pos[i] += 1
    return [r if r is not None else _unlocated(
        loc, f"unlocated: {loc.reason}" if not loc.located else f"unstaffed: no post or chain holder for grid {loc.grid}",
        city.version) for r, (_rid, loc, _line) in zip(result, items, strict=True)]


def assign(ctx: GridContext, case: RequestCase, holder: Holder, catalogue: dict, *, dispatch_seed: str,
           dispatched_at: datetime | None = None) -> None:
    """Hand the case to ``holder`` and record what the service needs besides (volunteers, departments).
    ``dispatch_seed``: makes the dispatch id the same when the cause is delivered again.
    ``dispatched_at``: an imported case the legacy system had passed to the departments then; their
    dispatch (and its report-back deadline) counts from that moment, not from the import."""
    city = ctx.require_city()
    t = now()
    handled = tuple(case.handled_by) or tuple(catalogue.get("handled_by") or ("grid",))
    community = (holder.area or {}).get("community")
    company = city.property_company(community) if "property" in handled else None
    case.assign(holder, t, property_company=company)
    if "volunteer" in handled or case.needs_volunteer or catalogue.get("needs_volunteer"):
        hours = float(catalogue.get("visit_hours") or 1.0)
        case.ask_volunteers("system", case.preferred_time or case.received_at or t, min(max(hours, 0.25), 24),
                            False, t)
    if "department" in handled:
        deps = list(case.departments) or list(catalogue.get("departments") or ())
        if not deps:
            case.attention = ["service needs a department but none is configured"]
            return
        hours = case.time_limits.get("report_back_hours") or ctx.default_report_back_hours
        since = dispatched_at or t
        report_by = due_at(since, hours, case.calendar, ctx.calendar.calendar)
        case.whistle(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{dispatch_seed}|dispatch|")), deps,
                     f"service {case.service_code} needs enforcement", report_by, since)
