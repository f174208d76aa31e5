"""Assignment against the real broker and store: A, B, the chain, unlocated, load limits under
1,000 concurrent requests, escalation and replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.values import Location
from civicgrid_grid.demo.roster import staff_ids_for_grid
from civicgrid_runtime.testing import eventually

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]


async def put_duty(harness, sid: str, duty: str, leave_until: str | None = None) -> None:
    """Straight to the store, past the API's rules: a leave that is over is what some tests need."""
    member = await harness.svc.ctx.staff.member(sid)
    member.duty, member.leave_until = duty, leave_until
    assert await harness.svc.ctx.staff.save_member(member)


async def test_a_holder_is_assigned_with_map_version(harness):
    g = harness.grid(0)
    env = harness.received(g)
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    a_id, _, _ = staff_ids_for_grid(g)
    assert (a.assignee_id, a.holder, a.area.grid) == (a_id, "A", g)
    assert a.reason == "A: on duty"
    assert a.map_version == harness.city.version
    case = await harness.svc.ctx.requests.get(env.subject)
    assert case.status == "assigned" and case.load_holder == a_id


async def test_b_when_a_on_leave(harness):
    g = harness.grid(1)
    a_id, b_id, _ = staff_ids_for_grid(g)
    r = await harness.http.put(f"/v1/staff/{a_id}/duty", json={"duty": "leave", "leave_until": "2099-12-03"},
                               headers=harness.token("sup", "supervisor", g[:12]))
    assert r.status_code == 200, r.text
    env = harness.received(g)
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    assert (a.assignee_id, a.holder) == (b_id, "B")
    assert a.reason == "B: A on leave until 2099-12-03"


async def test_a_leave_ends_with_the_districts_day_not_the_machines(harness):
    """A leave "until 2026-11-28" is over at 01:00 on the 29th in Asia/Shanghai, which is still the
    28th in UTC (17:00)."""
    from civicgrid_grid.domain.assignment import line_for
    from civicgrid_grid.handlers import decide_many, locate_request

    g = harness.grid(3)
    a_id, _, _ = staff_ids_for_grid(g)
    await put_duty(harness, a_id, "leave", "2026-11-28")
    lat, lon = harness.point_in(g)
    loc = locate_request(harness.city, Location(lat=lat, lon=lon))
    ctx = harness.svc.ctx

    async def holder_at(moment: datetime) -> str:
        [o] = await decide_many(ctx, [(f"req-{moment:%H%M}-{g}", loc, line_for(None, "repair"))], moment)
        await ctx.staff.release(o.load_holder, f"req-{moment:%H%M}-{g}")  # leave the load as it was
        return o.holder

    assert await holder_at(datetime(2026, 11, 28, 15, 0, tzinfo=UTC)) == "B"  # 23:00 on the 28th there
    assert await holder_at(datetime(2026, 11, 28, 17, 0, tzinfo=UTC)) == "A"  # 01:00 on the 29th there


async def test_chain_when_a_and_b_are_out(harness):
    g = harness.grid(2)
    a_id, b_id, head = staff_ids_for_grid(g)
    await put_duty(harness, a_id, "leave", "2099-01-01")
    await put_duty(harness, b_id, "off")
    env = harness.received(g)
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    assert (a.assignee_id, a.holder, a.level) == (head, "chain", "grid")
    assert "A on leave until 2099-01-01" in a.reason and "B off duty" in a.reason


async def test_unlocated_goes_to_the_street_queue(harness):
    env = harness.received(location=Location(lat=39.0, lon=115.0))
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    street = harness.city.streets.codes[0]
    assert (a.holder, a.assignee_id, a.area.street, a.area.grid) == ("unlocated", f"unlocated:{street}", street, None)
    r = await harness.http.get(f"/v1/queues/unlocated:{street}", headers=harness.token("sup", "supervisor", street))
    assert env.subject in [q["request_id"] for q in r.json()]


async def test_escalation_moves_one_level_up_and_tells_the_holder(harness):
    g = harness.grid(3)
    env = harness.received(g)
    await harness.publish(env)
    assigned = (await harness.assigned(env)).data
    now = datetime.now(UTC)
    esc = Envelope.wrap(RequestEscalated(request_id=env.subject, escalation_id=f"{env.subject}:response:1",
                                         clock="response", step=1, from_level="grid", to_level="community",
                                         due_at=now - timedelta(hours=1), escalated_at=now, overdue_hours=1.0),
                        source="/civicgrid/audit-test")
    await harness.publish(esc, esc)  # delivered twice: applied once
    [re] = await harness.collector.wait_for(env.subject, "civicgrid.request.reassigned")
    community_head = f"c{g[:12]}"
    assert (re.data.from_assignee, re.data.to_assignee, re.data.level) == (assigned.assignee_id, community_head,
                                                                          "community")
    assert re.data.escalation_id == f"{env.subject}:response:1"
    r = await harness.http.get(f"/v1/queues/{community_head}", headers=harness.token("sup", "supervisor", g[:12]))
    assert env.subject in [q["request_id"] for q in r.json()]
    async def released():  # the old holder's load is released right after the reassignment is out
        a = await harness.svc.ctx.staff.get(assigned.assignee_id)
        return env.subject not in a["holding"]

    await eventually(released, timeout=30)


async def test_replaying_the_same_event_changes_nothing(harness):
    g = harness.grid(4)
    env = harness.received(g)
    await harness.publish(env)
    await harness.assigned(env)
    a_id, _, _ = staff_ids_for_grid(g)
    before_doc = await harness.svc.ctx.requests.col.find_one({"_id": env.subject})
    before_staff = await harness.svc.ctx.staff.get(a_id)
    marker = harness.received(g)
    await harness.publish(env, env, env, marker)  # three redeliveries, then a fresh request as a barrier
    await harness.assigned(marker)
    after_doc = await harness.svc.ctx.requests.col.find_one({"_id": env.subject})
    for d in (before_doc, after_doc):  # the outbox is cleared asynchronously after publishing
        d.pop("_outbox", None)
        d.pop("_outbox_pending", None)
    after_staff = await harness.svc.ctx.staff.get(a_id)
    assert after_doc == before_doc
    assert after_staff["load"] == before_staff["load"] + 1  # only the marker
    ids = {e.id for e in harness.collector.of(env.subject, "civicgrid.request.assigned")}
    assert len(ids) == 1


async def test_a_redelivery_decided_otherwise_gives_the_load_back(harness):
    """A's post went to B between the first delivery and a redelivery: the redelivery reserves B,
    finds the document there and gives B's load back; the stored assignment and A's load stay."""
    g = harness.grid(14)
    a_id, b_id, _ = staff_ids_for_grid(g)
    env = harness.received(g)
    await harness.publish(env)
    await harness.assigned(env)
    before_doc = await harness.svc.ctx.requests.col.find_one({"_id": env.subject})
    r = await harness.http.put(f"/v1/staff/{a_id}/duty", json={"duty": "leave", "leave_until": "2099-12-03"},
                               headers=harness.token("sup", "supervisor", g[:12]))
    assert r.status_code == 200, r.text
    a_before, b_before = await harness.svc.ctx.staff.get(a_id), await harness.svc.ctx.staff.get(b_id)
    marker = harness.received(g)
    await harness.publish(env, marker)
    assert (await harness.assigned(marker)).data.assignee_id == b_id
    after_doc = await harness.svc.ctx.requests.col.find_one({"_id": env.subject})
    a_after, b_after = await harness.svc.ctx.staff.get(a_id), await harness.svc.ctx.staff.get(b_id)
    assert after_doc == before_doc and after_doc["load_holder"] == a_id
    assert (a_after["load"], env.subject in a_after["holding"]) == (a_before["load"], True)
    assert b_after["load"] == b_before["load"] + 1  # only the marker
    assert env.subject not in b_after["holding"]
    assert len({e.id for e in harness.collector.of(env.subject, "civicgrid.request.assigned")}) == 1


async def test_duplicates_wait_until_unmerged(harness):
    from civicgrid_contracts.events.intake import RequestUnmerged

    g = harness.grid(5)
    env = harness.received(g, duplicate_of="req-original")
    marker = harness.received(g)
    await harness.publish(env, marker)
    await harness.assigned(marker)
    assert harness.collector.of(env.subject, "civicgrid.request.assigned") == []
    un = Envelope.wrap(RequestUnmerged(request_id=env.subject, from_request_id="req-original", staff_id="s1",
                                       reason="different place"), source="/civicgrid/intake-test")
    await harness.publish(un)
    a = (await harness.assigned(env)).data
    assert a.area.grid == g


async def test_merged_then_unmerged_in_one_batch_keeps_their_order(harness):
    """RequestMerged events are written together, but before the next other event of the batch:
    an unmerge right behind its merge still finds the request merged and assigns it."""
    from civicgrid_contracts.events.intake import RequestMerged, RequestUnmerged

    g = harness.grid(6)
    env = harness.received(g, duplicate_of="req-first")
    merged = env.caused(RequestMerged(request_id=env.subject, into_request_id="req-first", distance_m=12.0,
                                      followers=2), source="/civicgrid/intake-test")
    un = env.caused(RequestUnmerged(request_id=env.subject, from_request_id="req-first", staff_id="s1",
                                    reason="different place"), source="/civicgrid/intake-test")
    await harness.publish(env, merged, un)
    a = (await harness.assigned(env)).data
    assert a.area.grid == g
    doc = await harness.svc.ctx.requests.col.find_one({"_id": env.subject})
    assert doc["_applied"] == [env.id, merged.id, un.id] and doc["status"] == "assigned"


async def test_volunteer_only_request_is_resolved_when_delivered(harness):
    from civicgrid_contracts.events.matching import ServiceDelivered

    g = harness.grid(6)
    env = harness.received(g, handled_by=("volunteer",), service_code="elder_visit", service_group="elderly care")
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    assert a.assignee_id == staff_ids_for_grid(g)[1]  # the care post: A is the grid's second worker
    await harness.collector.wait_for(env.subject, "civicgrid.request.volunteer_requested")
    now = datetime.now(UTC)
    sd = Envelope.wrap(ServiceDelivered(request_id=env.subject, volunteer_id="v1", hours=1.5,
                                        started_at=now - timedelta(hours=2), ended_at=now), source="/civicgrid/m")
    await harness.publish(sd)
    [res] = await harness.collector.wait_for(env.subject, "civicgrid.request.resolved")
    assert res.data.staff_id == "system"
