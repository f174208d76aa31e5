"""Grid's handlers against the in-memory adapters: the same flows the integration tests drive over
Kafka and the store, in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR, due_at
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.intake import RequestClosed, RequestMerged, RequestReopened, RequestUnmerged
from civicgrid_contracts.events.matching import ServiceDelivered
from civicgrid_grid.demo.roster import staff_ids_for_grid
from civicgrid_grid.domain.errors import ChangedMeanwhile, NotAllowed, UnknownReference
from civicgrid_grid.handlers import handle_requests, handle_supervision, handle_volunteers

from .fakes import LIMIT, city, delivered, fake_grid, published, received

ASSIGNED = "civicgrid.request.assigned"


def grid(i: int) -> str:
    return city().grids.codes[i]


async def test_received_goes_to_a_with_its_load_and_intakes_deadlines():
    ctx, _ = await fake_grid()
    env = received(grid(0))
    await handle_requests(ctx, delivered(env))
    [a] = published(ctx, env.subject, ASSIGNED)
    a_id = staff_ids_for_grid(grid(0))[0]
    assert (a.data.assignee_id, a.data.holder, a.data.reason) == (a_id, "A", "A: on duty")
    case = await ctx.requests.get(env.subject)
    assert (case.due_response, case.due_resolution) == (env.data.response_due, env.data.resolution_due)
    assert (await ctx.staff.get(a_id))["holding"] == [env.subject]


async def test_load_limit_moves_on_to_b_then_the_chain():
    ctx, _ = await fake_grid()
    g = grid(1)
    envs = [received(g) for _ in range(2 * LIMIT + 1)]
    await handle_requests(ctx, delivered(*envs))
    holders = [published(ctx, e.subject, ASSIGNED)[0].data.holder for e in envs]
    assert holders == ["A"] * LIMIT + ["B"] * LIMIT + ["chain"]
    assert "A at load limit (3)" in published(ctx, envs[-1].subject, ASSIGNED)[0].data.reason


async def test_a_redelivery_changes_nothing():
    ctx, _ = await fake_grid()
    env = received(grid(2))
    await handle_requests(ctx, delivered(env))
    before = dict(ctx.requests.docs[env.subject])
    await handle_requests(ctx, delivered(env, env))
    a = await ctx.staff.get(staff_ids_for_grid(grid(2))[0])
    assert ctx.requests.docs[env.subject] == before and a["load"] == 1
    assert len({e.id for e in published(ctx, env.subject, ASSIGNED)}) == 1


async def test_duplicate_waits_for_unmerge_then_is_assigned():
    ctx, _ = await fake_grid()
    env = received(grid(3), duplicate_of="req-first")
    merged = env.caused(RequestMerged(request_id=env.subject, into_request_id="req-first", distance_m=3,
                                      followers=2), source="/t")
    un = env.caused(RequestUnmerged(request_id=env.subject, from_request_id="req-first", staff_id="s",
                                    reason="elsewhere"), source="/t")
    await handle_requests(ctx, delivered(env, merged))
    assert published(ctx, env.subject) == [] and (await ctx.requests.get(env.subject)).status == "merged"
    await handle_requests(ctx, delivered(un, un))
    case = await ctx.requests.get(env.subject)
    assert case.status == "assigned" and case.applied == [env.id, merged.id, un.id]
    assert len(published(ctx, env.subject, ASSIGNED)) == 1


async def test_department_service_is_dispatched_with_the_calendars_report_back_deadline():
    ctx, _ = await fake_grid()
    env = received(grid(4), handled_by=("grid", "department"), departments=("chengguan",))
    await handle_requests(ctx, delivered(env))
    [d] = published(ctx, env.subject, "civicgrid.request.department_dispatched")
    assert d.data.report_by == due_at(d.data.dispatched_at, 24, "business", DEFAULT_CALENDAR)
    assert (await ctx.requests.get(env.subject)).dispatched_to == ["chengguan"]


async def test_an_imported_case_the_legacy_system_had_dispatched_counts_its_report_back_from_then():
    ctx, _ = await fake_grid()
    then = datetime(2026, 11, 30, 2, 15, tzinfo=UTC)  # a Monday, 10:15 in the office's zone
    env = received(grid(4), handled_by=("grid", "department"), departments=("chengguan",),
                   received_at=then - timedelta(hours=1), dispatched_at=then)
    await handle_requests(ctx, delivered(env))
    [d] = published(ctx, env.subject, "civicgrid.request.department_dispatched")
    assert d.data.dispatched_at == then
    assert d.data.report_by == due_at(then, 24, "business", DEFAULT_CALENDAR)


async def test_staff_flow_whistle_report_resolve_releases_the_load():
    ctx, commands = await fake_grid()
    env = received(grid(5))
    await handle_requests(ctx, delivered(env))
    holder = published(ctx, env.subject, ASSIGNED)[0].data.assignee_id
    case = await commands.accept(await commands.load(env.subject), holder)
    with pytest.raises(UnknownReference) as exc:
        await commands.whistle(case, holder, ["chengguan", "nobody"], "stall", None)
    assert exc.value.field == "departments" and exc.value.values == ["nobody"]
    case = await commands.whistle(await commands.load(env.subject), holder, ["chengguan", "housing"], "stall", 8)
    [did] = case.dispatches
    for dept in ("chengguan", "housing"):
        await commands.report(await commands.load(env.subject), did, dept, "done")
    await commands.resolve(await commands.load(env.subject), holder, "fixed")
    assert (await ctx.staff.get(holder))["load"] == 0
    assert [e.type.rsplit(".", 1)[-1] for e in published(ctx, env.subject)] == [
        "assigned", "accepted", "department_dispatched", "department_reported", "department_reported", "resolved"]


async def test_a_stale_read_loses_to_the_concurrent_writer():
    ctx, commands = await fake_grid()
    env = received(grid(6))
    await handle_requests(ctx, delivered(env))
    first, second = await commands.load(env.subject), await commands.load(env.subject)
    await commands.reject(first, "s", "not ours")
    with pytest.raises(ChangedMeanwhile):
        await commands.accept(second, "s")
    with pytest.raises(NotAllowed):
        await commands.accept(await commands.load(env.subject), "s")


async def test_transfer_moves_the_load_to_the_other_grid():
    ctx, commands = await fake_grid()
    env = received(grid(7))
    await handle_requests(ctx, delivered(env))
    old = published(ctx, env.subject, ASSIGNED)[0].data.assignee_id
    case = await commands.transfer(await commands.load(env.subject), old, grid(8), "wrong place")
    assert case.assignee_id == staff_ids_for_grid(grid(8))[0]
    assert (await ctx.staff.get(old))["holding"] == []
    with pytest.raises(UnknownReference):
        await commands.transfer(case, old, "999999999999999", "x")


async def test_escalation_reopen_close_and_volunteer_delivery():
    ctx, commands = await fake_grid()
    env = received(grid(9), handled_by=("volunteer",), service_code="elder_visit", service_group="elderly care")
    await handle_requests(ctx, delivered(env))
    now = datetime.now(UTC)
    esc = Envelope.wrap(RequestEscalated(request_id=env.subject, escalation_id="e1", clock="response", step=1,
                                         from_level="grid", to_level="community", overdue_hours=1.0, due_at=now,
                                         escalated_at=now), source="/audit")
    await handle_supervision(ctx, delivered(esc, esc))
    case = await ctx.requests.get(env.subject)
    assert (case.holder, case.level, case.escalations) == ("chain", "community", ["e1"])
    sd = Envelope.wrap(ServiceDelivered(request_id=env.subject, volunteer_id="v1", hours=1.0,
                                        started_at=now - timedelta(hours=1), ended_at=now), source="/m")
    await handle_volunteers(ctx, delivered(sd))
    assert (await ctx.requests.get(env.subject)).status == "resolved"
    assert (await ctx.staff.get(case.load_holder))["load"] == 0
    reopened = Envelope.wrap(RequestReopened(request_id=env.subject, reason="came back", reopened_at=now),
                             source="/intake")
    await handle_requests(ctx, delivered(reopened))
    assert (await ctx.requests.get(env.subject)).status == "reopened"
    assert (await ctx.staff.get(case.load_holder))["load"] == 1
    closed = Envelope.wrap(RequestClosed(request_id=env.subject, reason="confirmed", closed_at=now), source="/intake")
    await handle_requests(ctx, delivered(closed))
    assert (await ctx.requests.get(env.subject)).status == "closed"
    assert (await ctx.staff.get(case.load_holder))["load"] == 0


async def test_an_event_that_loses_a_race_is_applied_again_on_a_fresh_read_with_its_load_counted_once():
    ctx, commands = await fake_grid()
    env = received(grid(10), duplicate_of="req-first")
    await handle_requests(ctx, delivered(env))
    save, raced = ctx.requests.save, []

    async def racing_save(case, events=(), *, cause_id=None):
        if not raced:  # a staff member's write lands between the handler's read and its write
            raced.append(True)
            other = await ctx.requests.get(case.id)
            other.attention.append("looked at")
            await save(other)
        return await save(case, events, cause_id=cause_id)

    ctx.requests.save = racing_save
    un = Envelope.wrap(RequestUnmerged(request_id=env.subject, from_request_id="req-first", staff_id="s",
                                       reason="elsewhere"), source="/t")
    await handle_requests(ctx, delivered(un))
    case = await ctx.requests.get(env.subject)
    assert case.status == "assigned" and case.attention == ["looked at"] and case.applied[-1] == un.id
    holder = await ctx.staff.get(case.load_holder)
    assert holder["holding"] == [env.subject] and holder["load"] == 1
