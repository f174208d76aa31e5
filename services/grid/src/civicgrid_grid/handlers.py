"""Event and command handlers of the grid service.

Every state change and the events it causes are written in ONE request document (its outbox), with
the cause's id recorded in ``_applied`` so a redelivered event changes nothing. Received requests
are handled in batches: one bulk read of request documents, atomic load reservations per person,
one bulk write, one publish of every caused event.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import UpdateOne

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import due_at
from civicgrid_contracts.envelope import upcast
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_contracts.events.grid import (
    DepartmentAcknowledged,
    DepartmentDispatched,
    DepartmentReported,
    RequestAccepted,
    RequestAssigned,
    RequestNoted,
    RequestReassigned,
    RequestRejected,
    RequestResolved,
    RequestTransferred,
    VolunteerRequested,
)
from civicgrid_contracts.events.intake import (
    RequestClosed,
    RequestMerged,
    RequestReceived,
    RequestReopened,
    RequestUnmerged,
)
from civicgrid_contracts.events.matching import ServiceDelivered, VolunteerAccepted, VolunteerUnmatched
from civicgrid_contracts.values import CHAIN_LEVELS, AreaPath, Location
from civicgrid_grid.adapters.repos import (
    CatalogueRepository,
    RequestRepository,
    RosterRepository,
    StaffRepository,
)
from civicgrid_grid.domain.assignment import LEVEL_LABEL, Candidate, line_for, plan, reason_text
from civicgrid_grid.domain.citymap import CityMap, Located
from civicgrid_runtime import Problem
from civicgrid_runtime.bus import Delivery, EventPublisher
from civicgrid_runtime.calendar import CalendarFollower
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import (
    APPLIED,
    OUTBOX,
    OutboxRelay,
    merge_updates,
    pack_json,
    unpack_json,
    update_with_events,
)

log = get_logger("civicgrid.grid")

OPEN = ("assigned", "accepted", "in_progress", "reopened")
CRASH_AFTER_ASSIGNMENT = "grid.after_assignment_insert"
LEVEL_CODE_LEN = {"district": 6, "street": 9, "community": 12, "grid": 15, "building": 18, "unit": 18}


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AssignmentOutcome:
    located: Located
    staff_id: str
    holder: str
    level: str
    reason: str
    post_id: str | None
    load_holder: str | None
    map_version: int


@dataclass
class GridContext:
    """Everything handlers need (built in bootstrap)."""

    source: str
    publisher: EventPublisher
    relay: OutboxRelay
    requests: RequestRepository
    staff: StaffRepository
    roster: RosterRepository
    catalogue: CatalogueRepository
    #: the working calendar of the bus: department report-back deadlines are set on it
    calendar: CalendarFollower
    default_report_back_hours: float = 72.0
    #: the district's time zone: a leave "until 2026-11-28" ends at the end of that day there
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    city: CityMap | None = None
    _city_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def require_city(self) -> CityMap:
        if self.city is None:
            raise RuntimeError("no map loaded: import a map (civicgrid-grid import / load-demo) first")
        return self.city


# ================================================================================== assignment


def chain_keys(loc: Located) -> list[tuple[str, str]]:
    """(level, chain document id) from the grid up to the district."""
    out = []
    for level in ("grid", "community", "street", "district"):
        code = getattr(loc, level)
        if code:
            out.append((level, f"{level}:{code}"))
    return out


async def read_roster(ctx: GridContext, items: list[tuple[str, Located, str]]) -> tuple[dict, dict]:
    """The posts and chain holders these requests may go to (usually from the roster's cache)."""
    grids = [loc.grid for _, loc, _ in items if loc.grid]
    keys = {k for _, loc, _ in items for _, k in chain_keys(loc)}
    # one after the other: both are answered from memory as a rule, and a gather would cost the
    # batch a turn of the event loop
    posts = await ctx.roster.posts_for(grids, {line for _, _, line in items} | {"general"})
    chain = await ctx.roster.chain_for(sorted(keys))
    return posts, chain


def staff_ids(roster: tuple[dict, dict]) -> list[str]:
    """Everyone ``read_roster``'s posts and chain name."""
    posts, chain = roster
    return sorted({sid for p in posts.values() for sid in (p.get("a"), p.get("b")) if sid} | set(chain.values()))


async def decide_many(ctx: GridContext, items: list[tuple[str, Located, str]],
                      today: datetime | None = None, *,
                      roster: tuple[dict, dict] | None = None,
                      staff_docs: dict[str, dict] | None = None) -> list[AssignmentOutcome]:
    """Assign each (request id, location, line of work): A, B, the chain; reserve load atomically.
    ``roster``: ``read_roster`` of these items (or more), and ``staff_docs``: the staff documents of
    its ``staff_ids``, if the caller read them already."""
    city = ctx.require_city()
    today_d = (today or now()).astimezone(ctx.tz).date()
    roster = roster or await read_roster(ctx, items)
    posts, chain = roster
    if staff_docs is None:
        staff_docs = await ctx.staff.read_many(staff_ids(roster))
    staff = {sid: ctx.staff.staff_of(d) for sid, d in staff_docs.items()}

    # candidates per request, then rounds: everyone asks their next available candidate at once
    cands: list[list[Candidate]] = []
    posts_of: list[dict | None] = []
    for _rid, loc, line in items:
        if not loc.located:
            cands.append([])
            posts_of.append(None)
            continue
        post = posts.get((loc.grid, line)) or posts.get((loc.grid, "general"))
        ch = [(lvl, chain[k]) for lvl, k in chain_keys(loc) if k in chain]
        cands.append(plan(post, staff, ch, today_d))
        posts_of.append(post)
    pos = [0] * len(items)
    skipped: list[list[str]] = [[] for _ in items]
    result: list[AssignmentOutcome | None] = [None] * len(items)

    def advance(i: int) -> Candidate | None:
        while pos[i] < len(cands[i]):
            c = cands[i][pos[i]]
            if c.skip:
                skipped[i].append(f"{c.label} {c.skip}")
                pos[i] += 1
                continue
            return c
        return None

    while True:
        wants, asking = [], []
        for i, (rid, _loc, _line) in enumerate(items):
            if result[i] is not None:
                continue
            c = advance(i)
            if c is None:
                continue
            wants.append((c.staff_id, rid, c.limited))
            asking.append((i, c))
        if not wants:
            break
        granted = await ctx.staff.reserve_many(wants, read=staff_docs)
        staff_docs = None  # later rounds read afresh
        for i, c in asking:
            rid, loc, _line = items[i]
            if (c.staff_id, rid) in granted:
                post = posts_of[i]
                result[i] = AssignmentOutcome(loc, c.staff_id, c.holder, c.level, reason_text(c, skipped[i]),
                                              post["_id"] if post else None, c.staff_id, city.version)
            else:
                s = staff.get(c.staff_id)
                skipped[i].append(f"{c.label} at load limit ({s.limit if s else 0})")
                pos[i] += 1
    out = []
    for i, (_rid, loc, _line) in enumerate(items):
        if result[i] is not None:
            out.append(result[i])
        elif not loc.located:
            out.append(AssignmentOutcome(loc, f"unlocated:{loc.street}", "unlocated", "street",
                                         f"unlocated: {loc.reason}", None, None, city.version))
        else:
            # nobody configured for this grid at all: the street's unlocated queue sees it
            out.append(AssignmentOutcome(loc, f"unlocated:{loc.street}", "unlocated", "street",
                                         f"unstaffed: no post or chain holder for grid {loc.grid}", None, None,
                                         city.version))
    return out


def locate_request(city: CityMap, location: Location) -> Located:
    return city.locate(lat=location.lat, lon=location.lon, building_id=location.building_id,
                       address_text=location.address_text)


def area_of(loc: Located) -> AreaPath:
    return AreaPath(district=loc.district, street=loc.street, community=loc.community, grid=loc.grid,
                    building=loc.building)


def assignment_fields(o: AssignmentOutcome) -> dict[str, Any]:
    return {"area": area_of(o.located).model_dump(), "located_by": o.located.method, "assignee_id": o.staff_id,
            "holder": o.holder, "level": o.level, "reason": o.reason, "post_id": o.post_id,
            "load_holder": o.load_holder, "map_version": o.map_version}


def assigned_event(cause: Envelope, rid: str, o: AssignmentOutcome, city: CityMap, *, handled_by=(),
                   source: str, discriminator: str = "", at: datetime | None = None) -> Envelope:
    prop = city.property_company(o.located.community) if "property" in tuple(handled_by) else None
    return cause.caused(RequestAssigned(
        request_id=rid, area=area_of(o.located), post_id=o.post_id, assignee_id=o.staff_id, holder=o.holder,
        level=o.level, reason=o.reason, map_version=o.map_version, assigned_at=at or now(),
        property_company=prop), source=source, discriminator=discriminator)


# ================================================================================== outbox (batched)


def received_event(doc: dict[str, Any]) -> RequestReceived | None:
    """The RequestReceived a request document keeps (packed; plain in documents written before)."""
    received = doc.get("received")
    if not received:
        return None
    data = unpack_json(received) if isinstance(received, bytes) else received
    if "response_due" not in data:  # kept before deadlines were carried: the event's own upcaster
        data = upcast(RequestReceived.event_type, 1, data)
    return RequestReceived.model_validate(data)


def _received_fields(ev: RequestReceived, env: Envelope) -> dict[str, Any]:
    # the deadlines intake set when the request was received: the same instants everywhere; only re-assignment reads the whole event back; no query filters on it
    return {"received": pack_json(ev.model_dump(mode="json")), "correlation_id": env.correlationid,
            "service_code": ev.service_code, "service_group": ev.service_group, "handled_by": list(ev.handled_by),
            "priority": ev.priority, "prio": 0 if ev.priority == "urgent" else 1, "received_at": ev.received_at,
            "due_response": ev.response_due, "due_resolution": ev.resolution_due}


async def caused_on_assignment(ctx: GridContext, env: Envelope, ev: RequestReceived, o: AssignmentOutcome,
                               *, discriminator: str = "", catalogue: dict | None = None,
                               ) -> tuple[list[Envelope], dict[str, Any]]:
    """RequestAssigned, plus VolunteerRequested / DepartmentDispatched the service needs."""
    city = ctx.require_city()
    rid = ev.request_id
    if catalogue is None:
        catalogue = (await ctx.catalogue.get_many([ev.service_code])).get(ev.service_code, {})
    handled = tuple(ev.handled_by) or tuple(catalogue.get("handled_by") or ("grid",))
    evs = [assigned_event(env, rid, o, city, handled_by=handled, source=ctx.source, discriminator=discriminator)]
    extra: dict[str, Any] = {}
    t = now()
    if "volunteer" in handled or ev.needs_volunteer or catalogue.get("needs_volunteer"):
        hours = float(catalogue.get("visit_hours") or 1.0)
        evs.append(env.caused(VolunteerRequested(
            request_id=rid, service_code=ev.service_code, location=ev.location, community=o.located.community,
            needed_from=ev.preferred_time or ev.received_at, needed_hours=min(max(hours, 0.25), 24),
            resident_ref=ev.reporter_id, requested_by="system", requested_at=t), source=ctx.source,
            discriminator=discriminator))
        extra["volunteer_requested"] = True
    if "department" in handled:
        deps = tuple(ev.departments) or tuple(catalogue.get("departments") or ())
        if deps:
            hours = ev.time_limits.report_back_hours or ctx.default_report_back_hours
            dispatch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{env.id}|dispatch|{discriminator}"))
            report_by = due_at(t, hours, ev.time_limits.calendar, ctx.calendar.calendar)
            evs.append(env.caused(DepartmentDispatched(
                request_id=rid, dispatch_id=dispatch_id, departments=deps, joint=len(deps) > 1, report_by=report_by,
                reason=f"service {ev.service_code} needs enforcement", dispatched_at=t), source=ctx.source,
                discriminator=discriminator))
            extra[f"dispatches.{dispatch_id}"] = {"departments": list(deps), "report_by": report_by,
                                                  "acknowledged": {}, "reported": {}, "open": True}
            extra["status_detail"] = "department dispatched"
            extra["dispatched_to"] = list(deps)
        else:
            extra["attention"] = ["service needs a department but none is configured"]
    return evs, extra


async def handle_requests(ctx: GridContext, batch: list[Delivery]) -> None:
    received = [d for d in batch if isinstance(d.envelope.data, RequestReceived)]
    if received:
        await handle_received(ctx, received)
    # a RequestMerged only records itself on a request its RequestReceived stored as merged: the
    # run of them up to the next other event goes in one bulk write (a third of the pipeline's
    # requests are duplicates, and each cost grid a round trip of its own)
    merged: list[UpdateOne] = []
    for d in batch:
        data = d.envelope.data
        if isinstance(data, RequestReceived):
            continue
        if isinstance(data, RequestMerged):
            merged.append(UpdateOne(*_guarded(d.envelope, {"status": {"$in": ["merged", "new"]}},
                                              {"$set": {"status": "merged"}})))
            continue
        await ctx.requests.bulk_guarded(merged)
        merged = []
        if isinstance(data, RequestUnmerged):
            await on_unmerged(ctx, d.envelope)
        elif isinstance(data, RequestReopened):
            await on_reopened(ctx, d.envelope)
        elif isinstance(data, RequestClosed):
            await on_finished(ctx, d.envelope, "closed")
    await ctx.requests.bulk_guarded(merged)


def _guarded(env: Envelope, extra_filter: dict, update: dict) -> tuple[dict, dict]:
    """The filter and update that apply ``update`` once for ``env`` (recorded in ``_applied``)."""
    return ({"_id": env.subject, APPLIED: {"$ne": env.id}, **extra_filter},
            merge_updates(update, {"$push": {APPLIED: env.id}}))


async def _simple(ctx: GridContext, env: Envelope, extra_filter: dict, update: dict) -> dict | None:
    return await ctx.requests.col.find_one_and_update(*_guarded(env, extra_filter, update))


async def handle_received(ctx: GridContext, deliveries: list[Delivery]) -> None:
    city = ctx.require_city()
    # last delivery per request wins within a batch (at-least-once may repeat one)
    by_rid: dict[str, Delivery] = {}
    for d in deliveries:
        by_rid.setdefault(d.envelope.subject, d)
    located = {rid: (rid, locate_request(city, d.envelope.data.location),
                     line_for(d.envelope.data.service_group, d.envelope.data.service_code))
               for rid, d in by_rid.items() if not d.envelope.data.duplicate_of}
    # the roster first (from its cache, as a rule), then the other reads side by side. No read of
    # the requests themselves: a RequestReceived is a request's first event, so its document is
    # new unless this is a redelivery, which the insert's duplicate key tells (rare)
    roster = await read_roster(ctx, list(located.values()))
    services, staff_docs = await asyncio.gather(
        ctx.catalogue.get_many(sorted({d.envelope.data.service_code for d in by_rid.values()})),
        ctx.staff.read_many(staff_ids(roster)))
    todo: list[Delivery] = []
    ops: list[UpdateOne] = []
    for rid, d in by_rid.items():
        ev: RequestReceived = d.envelope.data
        if ev.duplicate_of:
            ops.append(UpdateOne({"_id": rid, APPLIED: {"$ne": d.envelope.id}},
                                 {"$set": {**_received_fields(ev, d.envelope), "status": "merged",
                                           "duplicate_of": ev.duplicate_of},
                                  "$push": {APPLIED: d.envelope.id}}, upsert=True))
            continue
        todo.append(d)
    await ctx.requests.bulk_guarded(ops)
    if not todo:
        return
    items = [located[d.envelope.subject] for d in todo]
    outcomes = await decide_many(ctx, items, roster=roster, staff_docs=staff_docs)
    inserts = []
    for d, o in zip(todo, outcomes, strict=True):
        ev: RequestReceived = d.envelope.data
        evs, extra = await caused_on_assignment(ctx, d.envelope, ev, o, catalogue=services.get(ev.service_code, {}))
        doc: dict[str, Any] = {"_id": ev.request_id, **_received_fields(ev, d.envelope), **assignment_fields(o),
                               "status": "assigned", "assigned_at": now(), APPLIED: [d.envelope.id]}
        for k, v in extra.items():
            if "." in k:  # "dispatches.<id>" -> nested
                head, tail = k.split(".", 1)
                doc.setdefault(head, {})[tail] = v
            else:
                doc[k] = v
        inserts.append((doc, evs))
    # new documents, each with its state, applied guard and caused events, in one write; a crash
    # before the publish delivers the RequestReceived again: its insert then finds the document
    # and publishes the events kept in it again
    inserted = set(await ctx.relay.insert_caused(ctx.requests.col, inserts,
                                                 crash_point_name=CRASH_AFTER_ASSIGNMENT))
    again = {doc["_id"]: o.load_holder for (doc, _), o in zip(inserts, outcomes, strict=True)
             if doc["_id"] not in inserted}
    if again:
        await release_redecided(ctx, again)


async def release_redecided(ctx: GridContext, decided: dict[str, str | None]) -> None:
    """Requests delivered again, whose documents were there already: the load this delivery
    reserved for a person other than the stored holder is given back (a reservation the stored
    holder already held was granted without counting again)."""
    stored = await ctx.requests.get_many(list(decided))
    for rid, holder in decided.items():
        if holder and holder != (stored.get(rid) or {}).get("load_holder"):
            await ctx.staff.release(holder, rid)


async def on_unmerged(ctx: GridContext, env: Envelope) -> None:
    rid = env.subject
    doc = (await ctx.requests.get_many([rid])).get(rid)
    if doc is None or env.id in (doc.get(APPLIED) or []) or doc.get("status") != "merged" or not doc.get("received"):
        if doc is not None and env.id not in (doc.get(APPLIED) or []) and doc.get("status") != "merged":
            await _simple(ctx, env, {}, {"$unset": {"duplicate_of": ""}})
        return
    ev = received_event(doc)
    city = ctx.require_city()
    [o] = await decide_many(ctx, [(rid, locate_request(city, ev.location), line_for(ev.service_group,
                                                                                     ev.service_code))])
    evs, extra = await caused_on_assignment(ctx, env, ev, o)
    await update_with_events(
        ctx.requests.col, ctx.relay, filter={"_id": rid, APPLIED: {"$ne": env.id}, "status": "merged"},
        update={"$set": {**assignment_fields(o), "status": "assigned", "assigned_at": now(), **extra},
                "$unset": {"duplicate_of": ""}, "$push": {APPLIED: env.id}}, events=evs)


async def on_reopened(ctx: GridContext, env: Envelope) -> None:
    rid = env.subject
    doc = await ctx.requests.get(rid)
    if doc is None:
        return
    holder = doc.get("assignee_id")
    if holder and not holder.startswith("unlocated:"):
        await ctx.staff.reserve(holder, rid, limited=False)
    await _simple(ctx, env, {}, {"$set": {"status": "reopened", "load_holder": holder if holder and not
                                          holder.startswith("unlocated:") else None,
                                          "reopened_reason": env.data.reason}})


async def on_finished(ctx: GridContext, env: Envelope, status: str) -> None:
    rid = env.subject
    doc = await _simple(ctx, env, {}, {"$set": {"status": status}})
    if doc and doc.get("load_holder"):
        await ctx.staff.release(doc["load_holder"], rid)


# ================================================================================== catalogue


async def handle_catalogue(ctx: GridContext, batch: list[Delivery]) -> None:
    for d in batch:
        ev = d.envelope.data
        if isinstance(ev, ServiceDefined):
            await ctx.catalogue.apply({"_id": ev.service_code, "revision": ev.revision, "group": ev.group,
                                       "handled_by": list(ev.handled_by), "departments": list(ev.departments),
                                       "needs_volunteer": ev.needs_volunteer, "visit_hours": ev.visit_hours,
                                       "report_back_hours": ev.time_limits.report_back_hours, "active": ev.active})


# ================================================================================== supervision


def chain_target(doc: dict, level: str) -> list[tuple[str, str]]:
    """Chain document ids to try for ``level`` in this request's area, then upwards."""
    area = doc.get("area") or {}
    out = []
    start = CHAIN_LEVELS.index(level)
    for lvl in CHAIN_LEVELS[start:]:
        code = area.get("building") if lvl in ("unit", "building") else area.get(lvl)
        if code:
            out.append((lvl, f"{lvl}:{code}"))
    return out


async def handle_supervision(ctx: GridContext, batch: list[Delivery]) -> None:
    for d in batch:
        if isinstance(d.envelope.data, RequestEscalated):
            await on_escalated(ctx, d.envelope)


async def on_escalated(ctx: GridContext, env: Envelope) -> None:
    ev: RequestEscalated = env.data
    rid = ev.request_id
    doc = (await ctx.requests.get_many([rid])).get(rid)
    if doc is None or env.id in (doc.get(APPLIED) or []):
        return
    if doc.get("status") not in OPEN:
        await _simple(ctx, env, {}, {"$push": {"escalations": ev.escalation_id}})
        return
    targets = chain_target(doc, ev.to_level)
    chain = await ctx.roster.chain_for([k for _, k in targets])
    found = next(((lvl, chain[k]) for lvl, k in targets if k in chain), None)
    if found is None:
        to_level, to_staff = ev.to_level, f"unlocated:{(doc.get('area') or {}).get('street')}"
    else:
        to_level, to_staff = found
        await ctx.staff.reserve(to_staff, rid, limited=False)
    reason = (f"escalated: {ev.clock} time limit passed {ev.overdue_hours:.1f} h ago (step {ev.step}), "
              f"{ev.from_level} -> {LEVEL_LABEL.get(to_level, to_level)}")
    out = env.caused(RequestReassigned(request_id=rid, from_assignee=doc.get("assignee_id"), to_assignee=to_staff,
                                       level=to_level, reason=reason, escalation_id=ev.escalation_id,
                                       reassigned_at=now()), source=ctx.source)
    res = await update_with_events(
        ctx.requests.col, ctx.relay, filter={"_id": rid, APPLIED: {"$ne": env.id}},
        update={"$set": {"assignee_id": to_staff, "level": to_level, "holder": "chain", "reason": reason,
                         "load_holder": to_staff if found else None},
                "$push": {APPLIED: env.id, "escalations": ev.escalation_id}}, events=[out])
    old = doc.get("load_holder")
    if res is not None and old and old != to_staff:
        await ctx.staff.release(old, rid)


# ================================================================================== matching


async def handle_volunteers(ctx: GridContext, batch: list[Delivery]) -> None:
    for d in batch:
        env, ev = d.envelope, d.envelope.data
        if isinstance(ev, VolunteerUnmatched):
            await _simple(ctx, env, {}, {"$push": {"attention": f"volunteer unmatched: {ev.reason}"}})
        elif isinstance(ev, VolunteerAccepted):
            await _simple(ctx, env, {"status": {"$in": ["assigned", "accepted"]}},
                          {"$set": {"status": "in_progress", "volunteer_id": ev.volunteer_id}})
        elif isinstance(ev, ServiceDelivered):
            await on_delivered(ctx, env)


async def on_delivered(ctx: GridContext, env: Envelope) -> None:
    ev: ServiceDelivered = env.data
    rid = ev.request_id
    doc = (await ctx.requests.get_many([rid])).get(rid)
    if doc is None or env.id in (doc.get(APPLIED) or []):
        return
    volunteer_only = set(doc.get("handled_by") or []) == {"volunteer"}
    if not volunteer_only or doc.get("status") not in OPEN:
        await _simple(ctx, env, {}, {"$set": {"service_delivered": True}})
        return
    out = env.caused(RequestResolved(request_id=rid, staff_id="system",
                                     resolution_note=f"volunteer {ev.volunteer_id} delivered {ev.hours:g} h"
                                     + (f": {ev.note}" if ev.note else ""), resolved_at=now()), source=ctx.source)
    res = await update_with_events(ctx.requests.col, ctx.relay, filter={"_id": rid, APPLIED: {"$ne": env.id}},
                                   update={"$set": {"status": "resolved", "service_delivered": True},
                                           "$push": {APPLIED: env.id}}, events=[out])
    if res is not None and doc.get("load_holder"):
        await ctx.staff.release(doc["load_holder"], rid)


# ================================================================================== staff commands


class Commands:
    """Staff actions over HTTP. Each is one guarded single-document write with its event."""

    def __init__(self, ctx: GridContext) -> None:
        self.ctx = ctx

    def _env(self, doc: dict, payload) -> Envelope:
        return Envelope.wrap(payload, source=self.ctx.source, correlation_id=doc.get("correlation_id"))

    async def load(self, rid: str) -> dict:
        doc = await self.ctx.requests.get(rid)
        if doc is None:
            raise Problem(404, "Request not found", f"No request {rid} is known to grid.")
        return doc

    async def _write(self, doc: dict, states: tuple[str, ...], update: dict, events: list[Envelope],
                     what: str) -> dict:
        res = await update_with_events(self.ctx.requests.col, self.ctx.relay,
                                       filter={"_id": doc["_id"], "status": {"$in": list(states)}},
                                       update=update, events=events)
        if res is None:
            raise Problem(409, "Conflict", f"Cannot {what}: the request is {doc.get('status')!r} "
                          f"(needs {', '.join(states)}).", type_="conflict")
        res.pop(OUTBOX, None)
        res.pop(APPLIED, None)
        return res

    async def accept(self, doc: dict, staff_id: str) -> dict:
        ev = self._env(doc, RequestAccepted(request_id=doc["_id"], staff_id=staff_id, accepted_at=now()))
        return await self._write(doc, ("assigned", "reopened"), {"$set": {"status": "accepted",
                                                                          "accepted_by": staff_id}}, [ev], "accept")

    async def note(self, doc: dict, staff_id: str, note: str) -> dict:
        t = now()
        ev = self._env(doc, RequestNoted(request_id=doc["_id"], staff_id=staff_id, note=note, noted_at=t))
        return await self._write(doc, OPEN, {"$push": {"notes": {"staff_id": staff_id, "note": note, "at": t}}},
                                 [ev], "add a note")

    async def ask_volunteers(self, doc: dict, staff_id: str, needed_from: datetime | None, hours: float,
                             recurring: bool) -> dict:
        rec = received_event(doc)
        ev = self._env(doc, VolunteerRequested(
            request_id=doc["_id"], service_code=doc.get("service_code") or "unknown",
            location=rec.location if rec else Location(), community=(doc.get("area") or {}).get("community"),
            needed_from=needed_from or now(), needed_hours=hours, recurring_weekly=recurring,
            resident_ref=rec.reporter_id if rec else None, requested_by=staff_id, requested_at=now()))
        return await self._write(doc, OPEN, {"$set": {"volunteer_requested": True}}, [ev], "ask for volunteers")

    async def whistle(self, doc: dict, staff_id: str, departments: list[str], reason: str,
                      report_back_hours: float | None) -> dict:
        known = {d["_id"] for d in await self.ctx.roster.departments.find({"_id": {"$in": departments}}).to_list(None)}
        unknown = [d for d in departments if d not in known]
        if unknown:
            raise Problem(422, "Unknown department", f"Unknown departments: {', '.join(unknown)}",
                          type_="validation-error", errors=[{"field": "departments", "message": f"unknown {u}"}
                                                           for u in unknown])
        t = now()
        dispatch_id = str(uuid.uuid4())
        rec = received_event(doc)
        report_by = due_at(t, report_back_hours or self.ctx.default_report_back_hours,
                           rec.time_limits.calendar if rec else "business", self.ctx.calendar.calendar)
        ev = self._env(doc, DepartmentDispatched(request_id=doc["_id"], dispatch_id=dispatch_id,
                                                 departments=tuple(departments), joint=len(departments) > 1,
                                                 report_by=report_by, reason=reason, dispatched_at=t))
        return await self._write(doc, OPEN, {"$set": {
            f"dispatches.{dispatch_id}": {"departments": departments, "report_by": report_by, "acknowledged": {},
                                          "reported": {}, "open": True, "by": staff_id},
            "status": "in_progress"}, "$addToSet": {"dispatched_to": {"$each": departments}}}, [ev],
            "dispatch to departments")

    def _dispatch(self, doc: dict, dispatch_id: str, department: str) -> dict:
        disp = (doc.get("dispatches") or {}).get(dispatch_id)
        if disp is None or department not in disp["departments"]:
            raise Problem(404, "Dispatch not found", f"No dispatch {dispatch_id} to {department} on this request.")
        return disp

    async def acknowledge(self, doc: dict, dispatch_id: str, department: str) -> dict:
        disp = self._dispatch(doc, dispatch_id, department)
        if department in disp.get("acknowledged", {}):
            return doc
        t = now()
        ev = self._env(doc, DepartmentAcknowledged(request_id=doc["_id"], dispatch_id=dispatch_id,
                                                   department=department, acknowledged_at=t))
        res = await update_with_events(
            self.ctx.requests.col, self.ctx.relay,
            filter={"_id": doc["_id"], f"dispatches.{dispatch_id}.acknowledged.{department}": {"$exists": False}},
            update={"$set": {f"dispatches.{dispatch_id}.acknowledged.{department}": t}}, events=[ev])
        return res or await self.load(doc["_id"])

    async def report(self, doc: dict, dispatch_id: str, department: str, outcome: str) -> dict:
        disp = self._dispatch(doc, dispatch_id, department)
        if department in disp.get("reported", {}):
            raise Problem(409, "Already reported", f"{department} already reported on dispatch {dispatch_id}.",
                          type_="conflict")
        remaining = [d for d in disp["departments"] if d not in disp.get("reported", {}) and d != department]
        all_reported = not remaining
        t = now()
        ev = self._env(doc, DepartmentReported(request_id=doc["_id"], dispatch_id=dispatch_id, department=department,
                                               outcome=outcome, reported_at=t, all_reported=all_reported))
        # guard: exactly the reports we saw, so two departments reporting at once cannot both be "last"
        filt = {"_id": doc["_id"], f"dispatches.{dispatch_id}.reported.{department}": {"$exists": False}}
        for other in disp["departments"]:
            if other != department:
                filt[f"dispatches.{dispatch_id}.reported.{other}"] = {"$exists": other in disp.get("reported", {})}
        res = await update_with_events(self.ctx.requests.col, self.ctx.relay, filter=filt, update={"$set": {
            f"dispatches.{dispatch_id}.reported.{department}": {"outcome": outcome, "at": t},
            f"dispatches.{dispatch_id}.open": not all_reported}}, events=[ev])
        if res is None:
            raise Problem(409, "Conflict", "The dispatch changed meanwhile; retry.", type_="conflict")
        return res

    async def resolve(self, doc: dict, staff_id: str, note: str) -> dict:
        open_dispatches = [k for k, v in (doc.get("dispatches") or {}).items() if v.get("open")]
        if open_dispatches:
            raise Problem(409, "Departments have not all reported",
                          f"Joint case still open: dispatch {', '.join(open_dispatches)} awaits reports.",
                          type_="conflict")
        ev = self._env(doc, RequestResolved(request_id=doc["_id"], staff_id=staff_id, resolution_note=note,
                                            resolved_at=now()))
        res = await self._write(doc, OPEN, {"$set": {"status": "resolved", "resolved_by": staff_id}}, [ev], "resolve")
        await self.ctx.staff.release(doc.get("load_holder"), doc["_id"])
        return res

    async def reject(self, doc: dict, staff_id: str, reason: str) -> dict:
        ev = self._env(doc, RequestRejected(request_id=doc["_id"], staff_id=staff_id, reason=reason,
                                            rejected_at=now()))
        res = await self._write(doc, OPEN, {"$set": {"status": "rejected", "rejected_reason": reason}}, [ev],
                                "reject")
        await self.ctx.staff.release(doc.get("load_holder"), doc["_id"])
        return res

    async def transfer(self, doc: dict, staff_id: str, to_grid: str, reason: str) -> dict:
        city = self.ctx.require_city()
        gi = city.grids.index_of(to_grid)
        if gi is None:
            raise Problem(422, "Unknown grid", f"Grid {to_grid} is not in map version {city.version}.",
                          type_="validation-error", errors=[{"field": "to_grid", "message": "unknown grid"}])
        if doc.get("status") not in OPEN:
            raise Problem(409, "Conflict", f"Cannot transfer a {doc.get('status')!r} request.", type_="conflict")
        from_grid = (doc.get("area") or {}).get("grid")
        loc = Located("transfer", district=to_grid[:6], street=to_grid[:9], community=to_grid[:12], grid=to_grid)
        transfer_id = str(uuid.uuid4())
        [o] = await decide_many(self.ctx, [(doc["_id"], loc, line_for(doc.get("service_group"),
                                                                        doc.get("service_code")))])
        o.reason = f"transferred from {from_grid}: {reason}; {o.reason}"
        t = now()
        ev1 = self._env(doc, RequestTransferred(request_id=doc["_id"], from_grid=from_grid, to_grid=to_grid,
                                                reason=reason, staff_id=staff_id, transferred_at=t))
        handled = tuple(doc.get("handled_by") or ())
        ev2 = assigned_event(ev1, doc["_id"], o, city, handled_by=handled, source=self.ctx.source, at=t)
        res = await update_with_events(
            self.ctx.requests.col, self.ctx.relay,
            filter={"_id": doc["_id"], "status": {"$in": list(OPEN)}, "assignee_id": doc.get("assignee_id")},
            update={"$set": {**assignment_fields(o), "status": "assigned", "assigned_at": t},
                    "$push": {"transfers": {"id": transfer_id, "from": from_grid, "to": to_grid, "reason": reason,
                                            "by": staff_id, "at": t}}}, events=[ev1, ev2])
        if res is None:
            await self.ctx.staff.release(o.load_holder, doc["_id"])
            raise Problem(409, "Conflict", "The request changed meanwhile; retry.", type_="conflict")
        old = doc.get("load_holder")
        if old and old != o.load_holder:
            await self.ctx.staff.release(old, doc["_id"])
        res.pop(OUTBOX, None)
        res.pop(APPLIED, None)
        return res

    async def reassign(self, doc: dict, supervisor: str, to_staff: str, reason: str) -> dict:
        target = await self.ctx.staff.get(to_staff)
        if target is None:
            raise Problem(422, "Unknown staff member", f"No staff member {to_staff}.", type_="validation-error",
                          errors=[{"field": "to_staff", "message": "unknown staff member"}])
        if doc.get("status") not in OPEN:
            raise Problem(409, "Conflict", f"Cannot reassign a {doc.get('status')!r} request.", type_="conflict")
        await self.ctx.staff.reserve(to_staff, doc["_id"], limited=False)
        level = target.get("level") or "grid"
        ev = self._env(doc, RequestReassigned(request_id=doc["_id"], from_assignee=doc.get("assignee_id"),
                                              to_assignee=to_staff, level=level,
                                              reason=f"supervisor {supervisor}: {reason}", reassigned_at=now()))
        res = await update_with_events(
            self.ctx.requests.col, self.ctx.relay,
            filter={"_id": doc["_id"], "assignee_id": doc.get("assignee_id")},
            update={"$set": {"assignee_id": to_staff, "holder": "supervisor", "level": level,
                             "reason": f"supervisor {supervisor}: {reason}", "load_holder": to_staff,
                             "status": "assigned" if doc.get("status") == "reopened" else doc.get("status")}},
            events=[ev])
        if res is None:
            await self.ctx.staff.release(to_staff, doc["_id"])
            raise Problem(409, "Conflict", "The request changed meanwhile; retry.", type_="conflict")
        old = doc.get("load_holder")
        if old and old != to_staff:
            await self.ctx.staff.release(old, doc["_id"])
        res.pop(OUTBOX, None)
        res.pop(APPLIED, None)
        return res


def candidates_debug(cands: list[Candidate]) -> list[dict]:
    return [c.__dict__ for c in cands]
