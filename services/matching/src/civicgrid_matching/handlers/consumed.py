"""Events from the bus: a volunteer is requested (match and offer), the request is resolved or
rejected (withdraw), the resident rated it (the volunteer's record), the catalogue changed."""

from __future__ import annotations

from civicgrid_contracts import Envelope
from civicgrid_contracts.events import catalogue as cat_ev
from civicgrid_contracts.events import grid as grid_ev
from civicgrid_contracts.events import intake as intake_ev
from civicgrid_matching.domain.catalogue import ServiceInfo
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.schedule import RELEASED
from civicgrid_matching.domain.scope import DISTRICT
from civicgrid_matching.handlers import bookings, hours, registry
from civicgrid_matching.handlers.context import Matching, until_saved
from civicgrid_matching.handlers.ranking import shortlist, shortlist_from_index
from civicgrid_runtime.bus import Delivery

#: the consumed events matching acts on (the topics carry others, such as RequestAssigned)
HANDLED = (grid_ev.VolunteerRequested, grid_ev.RequestResolved, grid_ev.RequestRejected, cat_ev.ServiceDefined,
           intake_ev.RequestRated)


async def handle_batch(ctx: Matching, batch: list[Delivery]) -> None:
    """One partition's batch, in order. New volunteer requests are matched together in one insert
    (``match_new_requests``); everything else is applied one event at a time."""
    batch = [d for d in batch if isinstance(d.envelope.data, HANDLED)]
    done = await match_new_requests(ctx, first_requests(batch))
    for d in batch:
        if d.envelope.id in done:
            continue
        await handle(ctx, d.envelope)


async def handle(ctx: Matching, env: Envelope) -> None:
    p = env.data
    if isinstance(p, grid_ev.VolunteerRequested):
        await on_volunteer_requested(ctx, env)
    elif isinstance(p, (grid_ev.RequestResolved, grid_ev.RequestRejected)):
        await on_request_closed(ctx, env)
    elif isinstance(p, cat_ev.ServiceDefined):
        await on_service_defined(ctx, p)
    elif isinstance(p, intake_ev.RequestRated):
        await on_request_rated(ctx, env)


def first_requests(batch: list[Delivery]) -> list[Envelope]:
    """VolunteerRequested events that are the first event of their request in this batch and the
    only request for it, so handling them first keeps every request's order; none when the
    catalogue changes inside the batch."""
    seen: set[str] = set()
    count: dict[str, int] = {}
    first: list[Envelope] = []
    for d in batch:
        rid = d.envelope.subject
        if isinstance(d.envelope.data, cat_ev.ServiceDefined):
            return []
        if isinstance(d.envelope.data, grid_ev.VolunteerRequested):
            count[rid] = count.get(rid, 0) + 1
            if rid not in seen:
                first.append(d.envelope)
        seen.add(rid)
    return [e for e in first if count[e.subject] == 1]


async def match_new_requests(ctx: Matching, envs: list[Envelope]) -> set[str]:
    """Match requests together, assuming they are new: one insert of their matches with the events
    they cause kept in them, one publish (the runtime's ``insert_caused``: the cause's redelivery
    is the outbox). Returns the ids of the events handled; a request the store already knew goes
    to the one-by-one path."""
    if not envs:
        return set()
    now = ctx.clock()
    matches = []
    for env in envs:
        m = Match.requested(env, ctx.qualifications(env.data.service_code))
        m.offer_first(shortlist_from_index(ctx, m), now, ctx.ttl)
        matches.append(m)
    inserted = await ctx.store.matches.add_new(matches, crash_point="matching.after_batch_insert")
    return {e.id for e in envs if e.subject in inserted}


async def on_volunteer_requested(ctx: Matching, env: Envelope) -> None:
    rid = env.data.request_id
    quals = ctx.qualifications(env.data.service_code)

    async def attempt() -> bool | None:
        m = await ctx.store.matches.get(rid)
        if m is None:
            m = Match.requested(env, quals)
            m.offer_first(await shortlist(ctx, m, ctx.settings.offers_at_once), ctx.clock(), ctx.ttl)
            return True if await ctx.store.matches.add_new([m]) else None
        if env.id in m.applied:
            return True  # applied before: nothing changes
        if m.request_again(env, quals):
            m.offer_first(await shortlist(ctx, m, ctx.settings.offers_at_once), ctx.clock(), ctx.ttl)
        return True if await ctx.store.matches.save(m, crash_point="matching.after_offer_write") else None

    await until_saved(attempt, f"The match of {rid}")


async def on_request_closed(ctx: Matching, env: Envelope) -> None:
    """Resolved or rejected: withdraw open offers; release an undelivered booking."""
    rid = env.data.request_id

    async def attempt() -> Match | bool | None:
        m = await ctx.store.matches.get(rid)
        if m is None or env.id in m.applied:
            return False
        release = m.releases_booking_on(env)
        m.close(env, ctx.clock())
        if not await ctx.store.matches.save(m):
            return None
        if release:
            await bookings.settle(ctx, m.winner, rid, RELEASED)
        return m

    await until_saved(attempt, f"The match of {rid}")


async def on_request_rated(ctx: Matching, env: Envelope) -> None:
    p: intake_ev.RequestRated = env.data  # type: ignore[assignment]
    rid = p.request_id
    first = await ctx.store.matches.get(rid)
    if first is None or not first.winner:
        return  # not a volunteer's request
    vid = first.winner
    # the volunteer's record and the hours entry first (both idempotent), the match's record last
    await registry.change_volunteer(ctx, vid, lambda v: v.rate(rid, p.rating, ctx.clock()), scope=DISTRICT)
    await hours.record_rating(ctx, rid, vid, p.rating)

    async def attempt() -> bool | None:
        m = await ctx.store.matches.get(rid)
        if not m.rated(env, p.rating):
            return True
        return True if await ctx.store.matches.save(m) else None

    await until_saved(attempt, f"The match of {rid}")


async def on_service_defined(ctx: Matching, p: cat_ev.ServiceDefined) -> None:
    stored = await ctx.store.catalogue.put(ServiceInfo.defined(p))
    ctx.catalogue[stored.code] = stored
