"""Hours (check in/out, complete -> ServiceDelivered), staff corrections that keep history, records and
reports, against the REAL broker and store."""

from __future__ import annotations

import csv
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from civicgrid_contracts import Envelope, topics
from civicgrid_contracts.events.intake import RequestRated
from civicgrid_runtime.testing import end_offsets, read_topic

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import as_volunteer, requested, staff, volunteer_body, wait_for  # noqa: E402

pytestmark = pytest.mark.infra


async def test_hours_delivery_correction_and_reports(infra, harness):
    h = harness
    await h.register(volunteer_body("h-1", north_m=100, party_member=True, work_unit="No.12 Middle School",
                                    community="c-07"))
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    oid = m.offers[0].offer_id
    assert (await h.http.post(f"/me/offers/{oid}/accept", headers=as_volunteer("h-1"))).status_code == 200
    # someone else cannot log hours on it
    r = await h.http.post(f"/me/assignments/{env.subject}/check-in", headers=as_volunteer("intruder"))
    assert r.status_code == 404
    r = await h.http.post(f"/me/assignments/{env.subject}/check-in", headers=as_volunteer("h-1"))
    assert r.status_code == 200, r.text
    entry_id = r.json()["_id"]
    since = await end_offsets(infra.kafka, topics.VOLUNTEERS.name)
    r = await h.http.post(f"/me/assignments/{env.subject}/complete", headers=as_volunteer("h-1"),
                          json={"note": "Helped with shopping and medicine"})
    assert r.status_code == 200 and r.json()["status"] == "delivered"
    again = await h.http.post(f"/me/assignments/{env.subject}/complete", headers=as_volunteer("h-1"), json={})
    assert again.json()["delivered_at"] == r.json()["delivered_at"]  # completing twice changes nothing

    async def delivered():
        recs = await read_topic(infra.kafka, topics.VOLUNTEERS.name, since=since, timeout=0.5)
        return [Envelope.from_kafka(x.value, x.headers) for x in recs if x.key == env.subject.encode()
                and dict(x.headers)["ce_type"] == b"civicgrid.volunteer.service_delivered"]

    (ev,) = await wait_for(delivered)
    assert ev.data.volunteer_id == "h-1" and ev.data.note.startswith("Helped")
    # staff correct the hours: the old figure stays in the history
    r = await h.http.post(f"/hours/{entry_id}/correct", headers=staff(), json={"hours": 2.5, "reason": "forgot to check out"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hours"] == 2.5 and body["approval"] == "corrected"
    assert body["history"][-1]["from_hours"] == 0.0 and body["history"][-1]["to_hours"] == 2.5
    r = await h.http.post(f"/hours/{entry_id}/approve", headers=staff())
    assert [x["action"] for x in r.json()["history"]] == ["corrected", "approved"]
    assert (await h.http.post(f"/hours/{entry_id}/correct", headers=as_volunteer("h-1"),
                              json={"hours": 9, "reason": "x"})).status_code == 403
    # the resident's rating reaches the volunteer's record
    await h.publisher.publish(Envelope.wrap(RequestRated(request_id=env.subject, rating="basically_satisfied",
                                                         rated_at=datetime.now(UTC)), source="/civicgrid/intake"))
    await wait_for(lambda: h.db.hours.find_one({"_id": entry_id, "rating": "basically_satisfied"}))
    month = body["month"]
    rep = (await h.http.get(f"/reports/service-times?month={month}", headers=staff())).json()
    assert rep["by_community"] == [{"community": "c-01", "person_times": 1, "hours": 2.5, "volunteers": 1}]
    assert rep["by_volunteer"][0] == {"volunteer_id": "h-1", "community": "c-07", "services": 1, "hours": 2.5}
    cert = (await h.http.get("/volunteers/h-1/certificate", headers=staff())).json()
    assert cert["volunteer"]["name"] == "Name h-1" and cert["totals"]["hours"] == 2.5
    assert cert["totals"]["approved_hours"] == 2.5 and cert["ratings"] == {"count": 1, "mean_points": 0.7}
    assert cert["services"][0]["rating"] == "basically_satisfied"
    units = (await h.http.get("/reports/work-units", headers=staff())).json()
    assert units == ["No.12 Middle School"]
    js = (await h.http.get(f"/reports/work-units/No.12 Middle School?month={month}", headers=staff())).json()
    assert js["totals"] == {"members": 1, "services": 1, "hours": 2.5}
    r = await h.http.get(f"/reports/work-units/No.12 Middle School?month={month}&format=csv", headers=staff())
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv")
    assert rows == [{"volunteer_id": "h-1", "name": "Name h-1", "community": "c-07", "services": "1", "hours": "2.5",
                     "rating_mean": "0.7"}]


async def test_no_show_lowers_reliability_and_reoffers(infra, harness):
    h = harness
    await h.register(volunteer_body("n-1", north_m=100), volunteer_body("n-2", north_m=400))
    env = requested()
    await h.publisher.publish(env)
    m = await h.match(env.subject, "open")
    assert (await h.http.post(f"/me/offers/{m.offers[0].offer_id}/accept",
                              headers=as_volunteer("n-1"))).status_code == 200
    r = await h.http.post(f"/matches/{env.subject}/no-show", headers=staff())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "open"
    m = await h.m.store.matches.get(env.subject)
    assert m.offered_to == ["n-2"]
    vol = (await h.http.get("/volunteers/n-1", headers=staff())).json()
    assert vol["stats"]["no_shows"] == 1
    sched = await h.m.store.schedules.get("n-1")
    assert {b.state for b in sched.bookings} == {"released"}


async def test_staff_api_needs_staff_and_validates(infra, harness):
    h = harness
    r = await h.http.post("/volunteers", json=volunteer_body("x-1"), headers=as_volunteer("x-1"))
    assert r.status_code == 403
    bad = volunteer_body("x-2", availability=[{"day": "mon", "start": "18:00", "end": "09:00"}])
    r = await h.http.post("/volunteers", json=bad, headers=staff())
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("availability")
    await h.register(volunteer_body("x-3"))
    r = await h.http.post("/volunteers", json=volunteer_body("x-3"), headers=staff())
    assert r.status_code == 409
    r = await h.http.get("/me", headers=as_volunteer("x-3"))
    assert r.status_code == 200 and r.json()["id"] == "x-3"
