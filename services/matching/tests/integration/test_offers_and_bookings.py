"""Offers, accepts, expiry and bookings against the REAL broker and store, under concurrency."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from civicgrid_contracts import topics
from civicgrid_runtime.testing import end_offsets

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import as_volunteer, next_weekday, requested, staff, volunteer_body, wait_for  # noqa: E402

pytestmark = pytest.mark.infra
OUT = topics.VOLUNTEERS.name


async def test_first_accept_wins_under_concurrent_accepts(infra, harness_k3):
    h = harness_k3
    await h.register(*(volunteer_body(f"c-{i}", north_m=100 * i) for i in range(1, 4)))
    since = await end_offsets(infra.kafka, OUT)
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    assert len(m.offers) == 3
    offers = {o.volunteer_id: o.offer_id for o in m.offers}
    results = await asyncio.gather(*(h.http.post(f"/me/offers/{oid}/accept", headers=as_volunteer(vid))
                                     for vid, oid in offers.items()))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409, 409], [r.text for r in results]
    winner = next(r.json()["winner"] for r in results if r.status_code == 200)
    final = await h.m.store.matches.get(env.subject)
    assert final.winner == winner and final.status == "accepted"
    assert sorted(o.status for o in final.offers) == ["accepted", "withdrawn", "withdrawn"]
    losers = [r.json() for r in results if r.status_code == 409]
    assert all(b["type"].endswith("taken") or "offer" in b["type"] for b in losers)
    accepted = await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.accepted"))
    assert len(accepted) == 1 and accepted[0].data.volunteer_id == winner
    withdrawn = await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.offer_withdrawn"))
    assert {e.data.volunteer_id for e in withdrawn} == set(offers) - {winner}
    # only the winner holds a booking
    for vid in offers:
        sched = await h.m.store.schedules.get(vid)
        states = [b.state for b in sched.bookings]
        assert states == (["booked"] if vid == winner else []) or (vid != winner and "booked" not in states)


async def test_no_double_booking_under_concurrent_accepts_across_requests(infra, harness):
    h = harness
    await h.register(volunteer_body("solo", north_m=50))
    start = next_weekday(3, 9)
    envs = [requested(at=start + timedelta(minutes=30 * i), hours=2) for i in range(4)]  # all overlap
    for e in envs:
        await h.publisher.publish(e)
    ms = [await h.match(e.subject, "open") for e in envs]
    oids = [m.offers[0].offer_id for m in ms]
    results = await asyncio.gather(*(h.http.post(f"/me/offers/{oid}/accept", headers=as_volunteer("solo"))
                                     for oid in oids))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 1, [r.text for r in results]
    assert {r.json()["type"].rsplit("/", 1)[-1] for r in results if r.status_code != 200} == {"double_booked"}
    sched = await h.m.store.schedules.get("solo")
    booked = [b for b in sched.bookings if b.state == "booked"]
    assert len(booked) == 1
    # a later, non-overlapping request is still offered to the same volunteer
    later = requested(at=start + timedelta(hours=5), hours=1)
    await h.publisher.publish(later)
    d = await h.match(later.subject, "open")
    assert [o.volunteer_id for o in d.offers] == ["solo"]


async def test_expiry_reoffers_to_next_then_reports_unmatched(infra, harness_fast_expiry):
    h = harness_fast_expiry
    await h.register(volunteer_body("e-1", north_m=100), volunteer_body("e-2", north_m=600))
    since = await end_offsets(infra.kafka, OUT)
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject)
    assert [o.volunteer_id for o in m.offers] == ["e-1"]
    m = await h.match(env.subject, "unmatched", timeout=30)
    by_vol = {o.volunteer_id: o for o in m.offers}
    assert by_vol["e-1"].status == "expired" and by_vol["e-2"].status == "expired"
    assert by_vol["e-2"].rank == 2
    types = [e.type for e in await wait_for(lambda: h.events(infra, env.subject, since, None))]
    await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.unmatched"))
    evs = await h.events(infra, env.subject, since)
    seq = [(e.type.rsplit(".", 1)[-1], getattr(e.data, "volunteer_id", None)) for e in evs]
    assert seq == [("offered", "e-1"), ("offer_expired", "e-1"), ("offered", "e-2"), ("offer_expired", "e-2"),
                   ("unmatched", None)], (seq, types)
    # an expired offer can no longer be accepted
    oid = by_vol["e-1"].offer_id
    r = await h.http.post(f"/me/offers/{oid}/accept", headers=as_volunteer("e-1"))
    assert r.status_code == 409
    r = await h.http.get("/volunteers/e-1", headers=staff())
    assert r.json()["stats"]["expiries"] == 1


async def test_decline_asks_the_next_candidate(infra, harness):
    h = harness
    await h.register(volunteer_body("d-1", north_m=100), volunteer_body("d-2", north_m=600))
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    (oid,) = [o.offer_id for o in m.offers]
    r = await h.http.post(f"/me/offers/{oid}/decline", headers=as_volunteer("d-1"), json={"reason": "ill"})
    assert r.status_code == 200 and r.json()["status"] == "declined"
    m = await h.m.store.matches.get(env.subject)
    open_ = [o.volunteer_id for o in m.open_offers]
    assert open_ == ["d-2"]
    r = await h.http.get("/me/offers", headers=as_volunteer("d-2"))
    assert [o["request_id"] for o in r.json()] == [env.subject]


async def test_weekly_hours_cap_respected(infra, harness):
    h = harness
    await h.register(volunteer_body("cap", north_m=50, weekly_hours_cap=3),
                     volunteer_body("spare", north_m=2000, weekly_hours_cap=20))
    monday = next_weekday(0, 9)
    first = requested(at=monday, hours=2)
    await h.publisher.publish(first)
    m = await h.match(first.subject, "open")
    assert [o.volunteer_id for o in m.offers] == ["cap"]
    r = await h.http.post(f"/me/offers/{m.offers[0].offer_id}/accept", headers=as_volunteer("cap"))
    assert r.status_code == 200
    # same week, no overlap, but 2 + 2 > 3 hours: the capped volunteer is not offered
    second = requested(at=monday + timedelta(days=2), hours=2)
    await h.publisher.publish(second)
    m2 = await h.match(second.subject, "open")
    assert [o.volunteer_id for o in m2.offers] == ["spare"]
    # and the store refuses the booking even if asked directly
    from civicgrid_matching.domain.errors import HoursCapExceeded

    sched = await h.m.store.schedules.get("cap")
    with pytest.raises(HoursCapExceeded) as err:
        sched.hold("other-req", monday + timedelta(days=3), 2, False, 3, h.m.tz, h.m.clock())
    assert err.value.code == "hours_cap"
    # next week is a new week
    third = requested(at=monday + timedelta(days=7), hours=2)
    await h.publisher.publish(third)
    m3 = await h.match(third.subject, "open")
    assert [o.volunteer_id for o in m3.offers] == ["cap"]


async def test_recurring_service_keeps_the_same_volunteer(infra, harness):
    h = harness
    await h.register(volunteer_body("first", north_m=900, skills=["after_school_care"]),
                     volunteer_body("nearer", north_m=20, skills=["after_school_care"]))
    r = await h.http.patch("/volunteers/nearer", headers=staff(), json={"on_duty": False})
    assert r.json()["on_duty"] is False
    env = requested(service="after_school_care", at=next_weekday(1, 16, 30), hours=1.5, resident_ref="res-77",
                    recurring=True)
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    r = await h.http.post(f"/me/offers/{m.offers[0].offer_id}/accept", headers=as_volunteer("first"))
    assert r.status_code == 200
    r = await h.http.patch("/volunteers/nearer", headers=staff(), json={"on_duty": True})
    # the next term's weekly request for the same resident goes to the volunteer who already serves them
    env2 = requested(service="after_school_care", at=next_weekday(2, 16, 30), hours=1.5, resident_ref="res-77",
                     recurring=True)
    await h.publisher.publish(env2)
    m2 = await h.match(env2.subject, "open")
    (o,) = m2.offers
    assert o.volunteer_id == "first" and o.components["continuity"] == 1.0
