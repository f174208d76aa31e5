"""Consumers' handlers: events of intake, matching, audit and the catalogue applied to requests.

Received requests are handled in batches: one bulk read of the roster, load reservations in
rounds, one insert of the new request documents with the events each caused."""

from __future__ import annotations

import asyncio

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_contracts.events.intake import (
    RequestClosed,
    RequestMerged,
    RequestReceived,
    RequestReopened,
    RequestUnmerged,
)
from civicgrid_contracts.events.matching import ServiceDelivered, VolunteerAccepted, VolunteerUnmatched
from civicgrid_contracts.values import CHAIN_LEVELS
from civicgrid_grid.domain.assignment import LEVEL_LABEL, line_for
from civicgrid_grid.domain.request import Holder, RequestCase, received_fields
from civicgrid_grid.handlers.assigning import assign, decide_many, locate_request, read_roster, staff_ids
from civicgrid_grid.handlers.context import GridContext, apply_event, envelopes, now
from civicgrid_runtime.bus import Delivery

CRASH_AFTER_ASSIGNMENT = "grid.after_assignment_insert"


def new_case(env: Envelope) -> RequestCase:
    ev: RequestReceived = env.data
    fields = received_fields(ev, env.correlationid)
    return RequestCase(id=ev.request_id, status="merged" if ev.duplicate_of else "new", applied=[env.id], **fields)


async def handle_requests(ctx: GridContext, batch: list[Delivery]) -> None:
    received = [d for d in batch if isinstance(d.envelope.data, RequestReceived)]
    if received:
        await handle_received(ctx, received)
    # the run of RequestMerged up to the next other event is written in one bulk write (a third of
    # the pipeline's requests are duplicates)
    merged: list[Envelope] = []
    for d in batch:
        data = d.envelope.data
        if isinstance(data, RequestReceived):
            continue
        if isinstance(data, RequestMerged):
            merged.append(d.envelope)
            continue
        await apply_merged(ctx, merged)
        merged = []
        if isinstance(data, RequestUnmerged):
            await on_unmerged(ctx, d.envelope)
        elif isinstance(data, RequestReopened):
            await on_reopened(ctx, d.envelope)
        elif isinstance(data, RequestClosed):
            await apply_event(ctx, d.envelope, _finish("closed"))
    await apply_merged(ctx, merged)


def _finish(status: str):
    async def change(case: RequestCase) -> None:
        case.finish(status)
    return change


async def apply_merged(ctx: GridContext, envs: list[Envelope]) -> None:
    """RequestMerged events: the first of each request in one bulk write (the rare second one after)."""
    if not envs:
        return
    cases = await ctx.requests.get_many([e.subject for e in envs])
    first: dict[str, tuple[RequestCase, str]] = {}
    rest: list[Envelope] = []
    for env in envs:
        case = cases.get(env.subject)
        if case is None or env.id in case.applied:
            continue
        if case.id in first:
            rest.append(env)
            continue
        case.merged()
        first[case.id] = (case, env.id)
    await ctx.requests.save_many(list(first.values()))
    for env in rest:
        await apply_event(ctx, env, _merged)


async def _merged(case: RequestCase) -> None:
    case.merged()


async def handle_received(ctx: GridContext, deliveries: list[Delivery]) -> None:
    city = ctx.require_city()
    by_rid: dict[str, Delivery] = {}
    for d in deliveries:  # at-least-once may repeat one within a batch
        by_rid.setdefault(d.envelope.subject, d)
    duplicates = [new_case(d.envelope) for d in by_rid.values() if d.envelope.data.duplicate_of]
    todo = [d for d in by_rid.values() if not d.envelope.data.duplicate_of]
    if duplicates:
        await ctx.requests.insert_new([(c, []) for c in duplicates])
    if not todo:
        return
    # no read of the requests themselves: a RequestReceived is a request's first event, so its
    # document is new unless this is a redelivery, which the insert's duplicate key tells (rare)
    items = [(d.envelope.subject, locate_request(city, d.envelope.data.location),
              line_for(d.envelope.data.service_group, d.envelope.data.service_code)) for d in todo]
    roster = await read_roster(ctx, items)
    services, staff_docs = await asyncio.gather(
        ctx.catalogue.get_many(sorted({d.envelope.data.service_code for d in todo})),
        ctx.staff.read_many(staff_ids(roster)))
    holders = await decide_many(ctx, items, roster=roster, staff_docs=staff_docs)
    inserts = []
    for d, holder in zip(todo, holders, strict=True):
        case = new_case(d.envelope)
        assign(ctx, case, holder, services.get(case.service_code, {}), dispatch_seed=d.envelope.id,
               dispatched_at=d.envelope.data.dispatched_at)
        inserts.append((case, envelopes(ctx, case, d.envelope)))
    # a crash before the publish delivers the RequestReceived again: its insert then finds the
    # document and publishes the events kept in it again
    inserted = await ctx.requests.insert_new(inserts, crash_point_name=CRASH_AFTER_ASSIGNMENT)
    again = {case.id: case.load_holder for case, _ in inserts if case.id not in inserted}
    if again:
        await release_redecided(ctx, again)


async def release_redecided(ctx: GridContext, decided: dict[str, str | None]) -> None:
    """Requests delivered again, already stored: the load this delivery reserved for someone other
    than the stored holder is given back."""
    stored = await ctx.requests.get_many(list(decided))
    for rid, holder in decided.items():
        if holder and holder != getattr(stored.get(rid), "load_holder", None):
            await ctx.staff.release(holder, rid)


async def on_unmerged(ctx: GridContext, env: Envelope) -> None:
    reserved: list[str] = []

    async def change(case: RequestCase) -> None:
        while reserved:  # an earlier attempt reserved load, then lost its write to another writer
            await ctx.staff.release(reserved.pop(), case.id)
        if case.unmerged():
            city = ctx.require_city()
            loc = city.locate(lat=case.location.get("lat"), lon=case.location.get("lon"),
                              building_id=case.location.get("building_id"),
                              address_text=case.location.get("address_text"))
            [holder] = await decide_many(ctx, [(case.id, loc, line_for(case.service_group, case.service_code))])
            reserved.extend([holder.load_holder] if holder.load_holder else [])
            catalogue = (await ctx.catalogue.get_many([case.service_code])).get(case.service_code, {})
            assign(ctx, case, holder, catalogue, dispatch_seed=env.id)
    await apply_event(ctx, env, change)


async def on_reopened(ctx: GridContext, env: Envelope) -> None:
    async def change(case: RequestCase) -> None:
        holder = case.assignee_id if case.assignee_id and not case.assignee_id.startswith("unlocated:") else None
        if holder:
            await ctx.staff.reserve_many([(holder, case.id, False)])
        case.reopen(env.data.reason, holder)
    await apply_event(ctx, env, change)


async def handle_catalogue(ctx: GridContext, batch: list[Delivery]) -> None:
    for d in batch:
        ev = d.envelope.data
        if isinstance(ev, ServiceDefined):
            await ctx.catalogue.apply({"_id": ev.service_code, "revision": ev.revision, "group": ev.group,
                                       "handled_by": list(ev.handled_by), "departments": list(ev.departments),
                                       "needs_volunteer": ev.needs_volunteer, "visit_hours": ev.visit_hours,
                                       "report_back_hours": ev.time_limits.report_back_hours, "active": ev.active})


def chain_target(case: RequestCase, level: str) -> list[tuple[str, str]]:
    """Chain document ids to try for ``level`` in this request's area, then upwards."""
    out = []
    for lvl in CHAIN_LEVELS[CHAIN_LEVELS.index(level):]:
        code = case.area.get("building") if lvl in ("unit", "building") else case.area.get(lvl)
        if code:
            out.append((lvl, f"{lvl}:{code}"))
    return out


async def handle_supervision(ctx: GridContext, batch: list[Delivery]) -> None:
    for d in batch:
        if isinstance(d.envelope.data, RequestEscalated):
            await on_escalated(ctx, d.envelope)


async def on_escalated(ctx: GridContext, env: Envelope) -> None:
    ev: RequestEscalated = env.data

    async def change(case: RequestCase) -> None:
        new = None
        if case.is_open:
            targets = chain_target(case, ev.to_level)
            chain = await ctx.roster.chain_for([k for _, k in targets])
            found = next(((lvl, chain[k]) for lvl, k in targets if k in chain), None)
            reason = (f"escalated: {ev.clock} time limit passed {ev.overdue_hours:.1f} h ago (step {ev.step}), "
                      f"{ev.from_level} -> {LEVEL_LABEL.get(found[0] if found else ev.to_level, ev.to_level)}")
            if found is None:
                new = Holder(f"unlocated:{case.area.get('street')}", "chain", ev.to_level, reason)
            else:
                await ctx.staff.reserve_many([(found[1], case.id, False)])
                new = Holder(found[1], "chain", found[0], reason, load_holder=found[1])
        case.escalate(ev.escalation_id, new, now())
    await apply_event(ctx, env, change, rid=ev.request_id)


async def handle_volunteers(ctx: GridContext, batch: list[Delivery]) -> None:
    for d in batch:
        env, ev = d.envelope, d.envelope.data
        if isinstance(ev, VolunteerUnmatched | VolunteerAccepted | ServiceDelivered):
            await apply_event(ctx, env, _volunteer_change(ev))


def _volunteer_change(ev):
    async def change(case: RequestCase) -> None:
        if isinstance(ev, VolunteerUnmatched):
            case.volunteer_unmatched(ev.reason)
        elif isinstance(ev, VolunteerAccepted):
            case.volunteer_accepted(ev.volunteer_id)
        else:
            case.delivered(ev.volunteer_id, ev.hours, ev.note, now())
    return change
