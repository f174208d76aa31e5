"""Matching's handlers on the in-memory store: the whole offer -> accept -> hours flow, declines,
expiry, no-shows, bookings and idempotency, in milliseconds and without infrastructure."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import delivery, next_weekday, on_fake, requested, volunteer_body  # noqa: E402

from civicgrid_contracts.events.grid import RequestRejected, RequestResolved  # noqa: E402
from civicgrid_contracts.events.intake import RequestRated  # noqa: E402
from civicgrid_matching.domain import errors  # noqa: E402
from civicgrid_matching.domain.scope import DISTRICT  # noqa: E402
from civicgrid_matching.handlers import consumed, hours, offers, queries, registry  # noqa: E402
from civicgrid_matching.schemas import VolunteerCreate  # noqa: E402


async def register(ctx, *bodies):
    for b in bodies:
        body = VolunteerCreate.model_validate(b)
        await registry.register(ctx, body.model_dump(mode="python", exclude={"id"}), "staff-1", body.id,
                                scope=DISTRICT)


def types(ctx, rid=None):
    return [(e.type.rsplit(".", 1)[-1], getattr(e.data, "volunteer_id", None))
            for e in ctx.store.published if rid is None or e.subject == rid]


async def offered(ctx, *vols, **kw):
    await register(ctx, *vols)
    env = requested(**kw)
    await consumed.handle_batch(ctx, [delivery(env)])
    return env, await ctx.store.matches.get(env.subject)


async def test_the_nearest_is_offered_and_the_events_say_so():
    ctx = on_fake()
    env, m = await offered(ctx, volunteer_body("near", north_m=100), volunteer_body("far", north_m=900))
    assert m.status == "open" and [o.volunteer_id for o in m.offers] == ["near"]
    assert types(ctx) == [("offered", "near")]
    assert ctx.store.published[0].causationid == env.id
    assert m.next_expiry == ctx.clock() + timedelta(seconds=600)


async def test_a_redelivered_request_changes_nothing_and_republishes_the_same_ids():
    ctx = on_fake()
    env, m = await offered(ctx, volunteer_body("r-1", north_m=100))
    await consumed.handle_batch(ctx, [delivery(env)])
    await consumed.on_volunteer_requested(ctx, env)
    again = await ctx.store.matches.get(env.subject)
    assert again.version == m.version and again.offers == m.offers
    assert len({e.id for e in ctx.store.published}) == 1  # published again, with the same id


async def test_decline_asks_the_next_then_accept_books_and_withdraws():
    ctx = on_fake(offers_at_once=2)
    env, m = await offered(ctx, *(volunteer_body(f"d-{i}", north_m=100 * i) for i in (1, 2, 3)))
    first, second = m.offers
    m = await offers.decline(ctx, "d-1", first.offer_id, "ill")
    assert [o.volunteer_id for o in m.open_offers] == ["d-2", "d-3"]
    m = await offers.accept(ctx, "d-3", m.open_offers[1].offer_id)
    assert m.winner == "d-3" and m.status == "accepted" and m.offered_to == []
    assert types(ctx)[-3:] == [("offered", "d-3"), ("accepted", "d-3"), ("offer_withdrawn", "d-2")]
    sched = await ctx.store.schedules.get("d-3")
    assert [(b.request_id, b.state) for b in sched.bookings] == [(env.subject, "booked")]
    assert (await registry.get(ctx, "d-1", scope=DISTRICT)).stats["declines"] == 1
    with pytest.raises(errors.Taken):
        await offers.accept(ctx, "d-2", second.offer_id)
    assert (await ctx.store.schedules.get("d-2")).bookings == []  # refused before holding a slot
    won = next(o for o in m.offers if o.volunteer_id == "d-3")
    assert (await offers.accept(ctx, "d-3", won.offer_id)).version == m.version  # the same accept again


async def test_no_double_booking_and_the_weekly_cap():
    ctx = on_fake()
    await register(ctx, volunteer_body("solo", north_m=50, weekly_hours_cap=3))
    start = next_weekday(3, 9)
    envs = [requested(at=start + timedelta(minutes=30 * i), hours=2) for i in range(2)]
    await consumed.handle_batch(ctx, [delivery(e, i) for i, e in enumerate(envs)])
    ms = [await ctx.store.matches.get(e.subject) for e in envs]
    await offers.accept(ctx, "solo", ms[0].offers[0].offer_id)
    with pytest.raises(errors.DoubleBooked):
        await offers.accept(ctx, "solo", ms[1].offers[0].offer_id)
    later = requested(at=start + timedelta(days=1), hours=2)  # no overlap, but 2 + 2 > 3 hours this week
    await consumed.on_volunteer_requested(ctx, later)
    assert (await ctx.store.matches.get(later.subject)).status == "unmatched"


async def test_expiry_reoffers_then_reports_unmatched():
    ctx = on_fake(offer_ttl_seconds=60)
    env, m = await offered(ctx, volunteer_body("e-1", north_m=100), volunteer_body("e-2", north_m=600))
    ctx.clock.advance(seconds=61)
    assert await offers.expire_offers(ctx) == 1
    ctx.clock.advance(seconds=61)
    assert await offers.expire_offers(ctx) == 1
    m = await ctx.store.matches.get(env.subject)
    assert m.status == "unmatched" and "declined or expired" in m.unmatched["reason"]
    assert types(ctx) == [("offered", "e-1"), ("offer_expired", "e-1"), ("offered", "e-2"),
                          ("offer_expired", "e-2"), ("unmatched", None)]
    with pytest.raises(errors.OfferClosed) as err:
        await offers.accept(ctx, "e-1", m.offers[0].offer_id)
    assert err.value.code == "offer_expired"
    assert (await registry.get(ctx, "e-1", scope=DISTRICT)).stats["expiries"] == 1


async def test_hours_delivery_correction_rating_and_reports():
    ctx = on_fake()
    env, m = await offered(ctx, volunteer_body("h-1", north_m=100, party_member=True, work_unit="School"))
    await offers.accept(ctx, "h-1", m.offers[0].offer_id)
    with pytest.raises(errors.NotAssigned):
        await hours.check_in(ctx, "intruder", env.subject)
    entry = await hours.check_in(ctx, "h-1", env.subject)
    ctx.clock.advance(minutes=50)
    done = await hours.complete(ctx, "h-1", env.subject, "shopping")
    assert done.status == "delivered" and done.hours == 0.75
    assert (await hours.complete(ctx, "h-1", env.subject, None)).delivered_at == done.delivered_at
    assert types(ctx)[-1] == ("service_delivered", "h-1")
    assert (await ctx.store.matches.get(env.subject)).status == "delivered"
    corrected = await hours.correct(ctx, entry.id, "staff-1", 2.5, "forgot to check out", scope=DISTRICT)
    assert corrected.history[-1]["from_hours"] == 0.75 and corrected.approval == "corrected"
    rated = requested(env.subject).caused(RequestRated(request_id=env.subject, rating="basically_satisfied",
                                                       rated_at=datetime.now(UTC)), source="/civicgrid/intake")
    await consumed.handle_batch(ctx, [delivery(rated), delivery(rated, 1)])
    assert (await registry.get(ctx, "h-1", scope=DISTRICT)).ratings == {env.subject: 0.7}
    rep = await queries.work_unit_report(ctx, "School", entry.month, scope=DISTRICT)
    assert rep["totals"] == {"members": 1, "services": 1, "hours": 2.5} and rep["members"][0]["rating_mean"] == 0.7
    assert [e.id for e in await ctx.store.hours.of_volunteer("h-1", entry.month)] == [entry.id]


async def test_no_show_reopens_and_resolution_withdraws():
    ctx = on_fake()
    env, m = await offered(ctx, volunteer_body("n-1", north_m=100), volunteer_body("n-2", north_m=400))
    await offers.accept(ctx, "n-1", m.offers[0].offer_id)
    m = await offers.no_show(ctx, env.subject, "staff-1", scope=DISTRICT)
    assert m.status == "open" and m.offered_to == ["n-2"] and m.no_show["volunteer_id"] == "n-1"
    assert [b.state for b in (await ctx.store.schedules.get("n-1")).bookings] == ["released"]
    resolved = env.caused(RequestResolved(request_id=env.subject, staff_id="s", resolution_note="done",
                                          resolved_at=datetime.now(UTC)), source="/civicgrid/grid")
    await consumed.handle_batch(ctx, [delivery(resolved)])
    await consumed.handle_batch(ctx, [delivery(resolved)])
    m = await ctx.store.matches.get(env.subject)
    assert m.status == "closed" and {o.status for o in m.offers} == {"no_show", "withdrawn"}
    assert types(ctx).count(("offer_withdrawn", "n-2")) == 1
    assert await queries.my_offers(ctx, "n-2") == []


async def test_rejection_after_accept_releases_the_booking():
    ctx = on_fake()
    env, m = await offered(ctx, volunteer_body("x-1", north_m=100))
    await offers.accept(ctx, "x-1", m.offers[0].offer_id)
    await consumed.on_request_closed(ctx, env.caused(RequestRejected(
        request_id=env.subject, staff_id="s", reason="out of scope", rejected_at=datetime.now(UTC)),
        source="/civicgrid/grid"))
    assert [b.state for b in (await ctx.store.schedules.get("x-1")).bookings] == ["released"]


async def test_a_stale_save_is_refused_and_the_handler_reads_again():
    ctx = on_fake(offers_at_once=2)
    env, m = await offered(ctx, volunteer_body("s-1", north_m=100), volunteer_body("s-2", north_m=300))
    stale = await ctx.store.matches.get(env.subject)
    await offers.accept(ctx, "s-1", m.offers[0].offer_id)
    stale.accept("s-2", stale.offers[1].offer_id, ctx.clock())
    assert await ctx.store.matches.save(stale) is False
    assert (await ctx.store.matches.get(env.subject)).winner == "s-1"


async def test_the_demo_roster_imports_once_with_its_qualifications():
    from civicgrid_matching.schemas import RosterRow

    roster = Path(__file__).parents[4] / "deploy" / "local" / "demo" / "volunteers.jsonl"
    rows = [RosterRow.model_validate_json(line) for line in roster.read_text(encoding="utf-8").splitlines()[:10]]
    ctx = on_fake()
    assert await registry.import_roster(ctx, rows, "roster") == {"created": 10, "already_there": 0}
    assert await registry.import_roster(ctx, rows, "roster") == {"created": 0, "already_there": 10}
    v = await registry.get(ctx, "demo-vol-0002", scope=DISTRICT)
    assert set(v.qualifications) == {"elderly_care"} and v.qualifications["elderly_care"].valid_at(ctx.clock())
