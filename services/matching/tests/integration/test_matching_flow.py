"""Matching against the REAL Kafka broker and store: events in, offers out, ranking explained."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from civicgrid_contracts import Envelope, topics
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_contracts.events.grid import RequestResolved
from civicgrid_contracts.events.intake import RequestRated
from civicgrid_contracts.values import TimeLimits
from civicgrid_matching.handlers import consumed
from civicgrid_runtime.bus import header
from civicgrid_runtime.testing import end_offsets

sys.path.insert(0, str(Path(__file__).parents[1]))

from matching_helpers import as_volunteer, next_weekday, requested, staff, volunteer_body, wait_for  # noqa: E402,F401

pytestmark = pytest.mark.infra
OUT = topics.VOLUNTEERS.name


async def test_right_volunteer_chosen_and_ranking_explained(infra, harness):
    h = harness
    await h.register(volunteer_body("v-near", north_m=200), volunteer_body("v-mid", north_m=900),
                     volunteer_body("v-far", north_m=2500), volunteer_body("v-other-skill", north_m=10,
                                                                           skills=["legal_advice"]))
    since = await end_offsets(infra.kafka, OUT)
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    (offer,) = m.offers
    assert offer.volunteer_id == "v-near"
    r = await h.http.get(f"/matches/{env.subject}", headers=staff())
    body = r.json()
    assert "distance" in body["formula"] and "fairness" in body["formula"]
    assert body["offers"][0]["why"].startswith("rank 1: score")
    assert set(body["offers"][0]["components"]) >= {"distance", "fairness", "rating", "reliability", "continuity"}
    # the full ranking, explained, through the preview endpoint
    r = await h.http.post("/match/preview", headers=staff(), json={
        "service_code": "elderly_care_home", "lat": 39.90, "lon": 116.30,
        "needed_from": next_weekday(0, 10).isoformat(), "needed_hours": 2})
    ranked = [c["volunteer_id"] for c in r.json()["candidates"]]
    assert ranked == ["v-near", "v-mid", "v-far"]
    assert r.json()["candidates"][0]["score"] > r.json()["candidates"][1]["score"]
    offered = await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.offered"))
    assert offered[0].data.volunteer_id == "v-near" and offered[0].causationid == env.id
    assert "Name" not in offered[0].data.model_dump_json()  # no personal data in events


async def test_qualification_gating(infra, harness):
    h = harness
    code = "hospital_escort"
    svc = ServiceDefined(request_id=code, service_code=code, name_zh="陪診", name_en="Hospital escort",
                         group="volunteer", handled_by=("volunteer",), needs_volunteer=True,
                         required_qualifications=("first_aid",), visit_hours=3,
                         time_limits=TimeLimits(response_hours=4, resolution_hours=48), revision=1,
                         changed_at=datetime.now(UTC))
    await h.publisher.publish(Envelope.wrap(svc, source="/civicgrid/intake"))
    await wait_for(lambda: h.m.store.catalogue.all())
    await h.register(volunteer_body("q-none", north_m=50, skills=[code]),
                     volunteer_body("q-expired", north_m=100, skills=[code]),
                     volunteer_body("q-valid", north_m=1500, skills=[code]))
    when = next_weekday(2, 9)
    r = await h.http.post("/volunteers/q-expired/qualifications", headers=staff(),
                          json={"code": "first_aid", "expires_on": (when - timedelta(days=3)).date().isoformat()})
    assert r.status_code == 200 and r.json()["qualifications"]["first_aid"]["valid"] is True
    r = await h.http.post("/volunteers/q-valid/qualifications", headers=staff(),
                          json={"code": "first_aid", "expires_on": (when + timedelta(days=300)).date().isoformat()})
    assert r.status_code == 200
    env = requested(service=code, at=when)
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    assert [o.volunteer_id for o in m.offers] == ["q-valid"]


async def test_availability_windows_and_exceptions(infra, harness):
    h = harness
    monday_10 = next_weekday(0, 10)
    weekend = [{"day": d, "start": "08:00", "end": "20:00"} for d in ("sat", "sun")]
    monday_morning = [{"day": "mon", "start": "08:00", "end": "12:00"}]
    await h.register(
        volunteer_body("a-weekend", north_m=50, availability=weekend),
        volunteer_body("a-short", north_m=80, availability=[{"day": "mon", "start": "08:00", "end": "11:00"}]),
        volunteer_body("a-away", north_m=120, availability=monday_morning,
                       exceptions=[{"start": (monday_10 - timedelta(days=1)).isoformat(),
                                    "end": (monday_10 + timedelta(days=1)).isoformat(), "reason": "travel"}]),
        volunteer_body("a-ok", north_m=700, availability=monday_morning))
    env = requested(at=monday_10, hours=2)
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    assert [o.volunteer_id for o in m.offers] == ["a-ok"]
    # outside everyone's window: unmatched, with the reason
    env2 = requested(at=next_weekday(2, 22), hours=1)
    await h.publisher.publish(env2)
    m2 = await h.match(env2.subject, "unmatched")
    assert m2.winner is None


async def test_unmatched_is_reported(infra, harness):
    h = harness
    since = await end_offsets(infra.kafka, OUT)
    env = requested(service="legal_advice")
    await h.publisher.publish(env)
    await h.match(env.subject, "unmatched")
    (ev,) = await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.unmatched"))
    assert "no eligible volunteer" in ev.data.reason and ev.data.candidates_considered == 0


async def test_redelivered_events_change_nothing(infra, harness):
    h = harness
    await h.register(volunteer_body("r-1", north_m=100), volunteer_body("r-2", north_m=300))
    since = await end_offsets(infra.kafka, OUT)
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    await h.publisher.publish(env)  # at-least-once: the same event again
    await consumed.on_volunteer_requested(h.m, env)  # and once more, straight into the handler
    await asyncio.sleep(1.0)
    again = await h.m.store.matches.get(env.subject)
    assert again.version == m.version and again.offers == m.offers
    offered = await h.events(infra, env.subject, since, "civicgrid.volunteer.offered")
    assert len({e.id for e in offered}) == 1
    # accept, then a rating delivered twice counts once
    (offer,) = m.offers
    r = await h.http.post(f"/me/offers/{offer.offer_id}/accept", headers=as_volunteer("r-1"))
    assert r.status_code == 200, r.text
    rated = Envelope.wrap(RequestRated(request_id=env.subject, rating="satisfied", rated_at=datetime.now(UTC)),
                          source="/civicgrid/intake")
    await h.publisher.publish(rated)
    await h.publisher.publish(rated)
    await wait_for(lambda: h.db.matches.find_one({"_id": env.subject, "rating": "satisfied"}))
    await asyncio.sleep(0.5)
    r = await h.http.get("/volunteers/r-1", headers=staff())
    assert r.json()["rating_count"] == 1 and r.json()["rating_mean"] == 1.0


async def test_resolved_request_withdraws_open_offers(infra, harness_k3):
    h = harness_k3
    await h.register(*(volunteer_body(f"w-{i}", north_m=100 * i) for i in range(1, 4)))
    since = await end_offsets(infra.kafka, OUT)
    env = requested()
    await h.publisher.publish(env)
    await h.match(env.subject, "open")
    await h.publisher.publish(env.caused(RequestResolved(request_id=env.subject, staff_id="s", resolution_note="done",
                                                         resolved_at=datetime.now(UTC)), source="/civicgrid/grid"))
    m = await h.match(env.subject, "closed")
    assert {o.status for o in m.offers} == {"withdrawn"}
    withdrawn = await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.offer_withdrawn"))
    assert len(withdrawn) == 3
    r = await h.http.get("/me/offers", headers=as_volunteer("w-1"))
    assert r.json() == []
    _ = header


async def test_crash_between_batch_insert_and_publish_is_republished_once(infra, harness):
    """The batched path writes only the matches, each keeping the events it caused; if the
    process dies before publishing, the request, never committed, comes again and the very same
    events are published from the stored match (the runtime's ``insert_caused``)."""
    h = harness
    await h.register(volunteer_body("b-1", north_m=100))
    since = await end_offsets(infra.kafka, OUT)
    env = requested()
    publisher = h.m.store.matches.relay._publisher  # noqa: SLF001

    class Died(Exception):
        pass

    async def die(_events):
        raise Died("process killed before publishing")

    real = publisher.publish_many
    publisher.publish_many = die
    try:
        with pytest.raises(Died):
            await consumed.match_new_requests(h.m, [env])
    finally:
        publisher.publish_many = real
    assert await h.events(infra, env.subject, since) == []
    stored = await h.m.store.matches.get(env.subject)
    await h.publisher.publish(env)  # the consumer sees the request again (it was never committed)
    offered = await wait_for(lambda: h.events(infra, env.subject, since, "civicgrid.volunteer.offered"))
    await asyncio.sleep(1.0)
    offered = await h.events(infra, env.subject, since, "civicgrid.volunteer.offered", distinct=False)
    assert len(offered) == 1 and offered[0].data.volunteer_id == "b-1"
    again = await h.m.store.matches.get(env.subject)
    assert again.version == stored.version == 1 and again.applied == [env.id]


async def test_grid_publishes_assigned_before_requested_and_the_batched_path_still_takes_it(infra, harness):
    """On grid's topic a RequestAssigned comes just before the VolunteerRequested of the same
    request; matching ignores it, and the request still takes the batched path (its match is
    inserted with the events it caused) instead of the one-by-one path."""
    from civicgrid_contracts.events.grid import RequestAssigned
    from civicgrid_contracts.values import AreaPath
    from civicgrid_runtime.bus import Delivery

    h = harness
    await h.register(volunteer_body("g-1", north_m=60))
    env = requested()
    assigned = env.caused(RequestAssigned(
        request_id=env.subject, area=AreaPath(community="c-01"), assignee_id="s-1", holder="A", reason="A: on duty",
        map_version=1, assigned_at=datetime.now(UTC)), source="/civicgrid/grid")
    await consumed.handle_batch(h.m, [Delivery(assigned, topics.ASSIGNMENTS.name, 0, 0),
                                      Delivery(env, topics.ASSIGNMENTS.name, 0, 1)])
    doc = await h.db.matches.find_one({"_id": env.subject})
    assert doc["_caused"] and doc["_applied"] == [env.id] and doc["offers"] and doc["version"] == 1
