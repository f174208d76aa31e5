"""Every older document shape still reads: the first version's documents (no ``schema_version``,
maps keyed by data, one-letter booking fields) go through the one upcaster path per collection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicgrid_matching.adapters import documents as docs

T = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_a_first_version_match_reads_with_its_offers_in_rank_order():
    offer = {"volunteer_id": "v-2", "rank": 2, "score": 0.7, "distance_m": 900.0, "components": {"distance": 0.5},
             "status": "open", "offered_at": T, "expires_at": T + timedelta(minutes=30)}
    v1 = {"_id": "req.1", "v": 3, "service_code": "care", "lat": 39.9, "lon": 116.3, "community": "c-01",
          "needed_from": T, "needed_hours": 2.0, "recurring": False, "resident_ref": None,
          "required_qualifications": [], "corr": "corr-1", "cause": "ev-1", "gen": 1, "winner": None,
          "asked": ["v-1", "v-2"], "offers": {"req\uff0e1~1~v-2": offer,
                                              "req\uff0e1~1~v-1": {**offer, "volunteer_id": "v-1", "rank": 1,
                                                                   "status": "declined"}},
          "offered_to": ["v-2"], "requested_at": T, "status": "open", "next_expiry": T, "_applied": ["ev-1"],
          "_batch": "b1"}
    m = docs.load("matches", v1)
    assert m.version == 3 and m.correlation_id == "corr-1" and m.cause_id == "ev-1" and m.generation == 1
    assert [(o.offer_id, o.status) for o in m.offers] == [("req.1~1~v-1", "declined"), ("req.1~1~v-2", "open")]
    assert m.offered_to == ["v-2"] and m.applied == ["ev-1"]
    now = docs.match_doc(m)
    assert now["schema_version"] == docs.SCHEMA_VERSION and "v" not in now and "_batch" not in now


def test_a_first_version_schedule_reads_with_named_booking_fields():
    v1 = {"_id": "v-1", "v": 2, "updated_at": T, "busy": {
        "req\uff0e1": {"r": "req.1", "s": T, "h": 2.0, "w": True, "state": "booked", "at": T}}}
    s = docs.load("schedules", v1)
    (b,) = s.bookings
    assert (s.version, b.request_id, b.start, b.hours, b.weekly, b.state) == (2, "req.1", T, 2.0, True, "booked")


def test_a_first_version_volunteer_reads_with_lists_for_its_maps():
    v1 = {"_id": "v-1", "name": "N", "community": "c-01", "lat": 39.9, "lon": 116.3, "skills": ["care"],
          "qualifications": {"first_aid": {"expires_at": None, "verified_by": "s", "verified_at": T, "evidence": "x"}},
          "stats": {"declines": 2}, "ratings": {"req\uff0e1": 0.7}, "serves": {"res\uff0e9": "req.1"},
          "created_at": T, "updated_at": T, "created_by": "s"}
    v = docs.load("volunteers", v1)
    assert v.version == 1 and v.qualifications["first_aid"].evidence == "x"
    assert v.ratings == {"req.1": 0.7} and v.serves == {"res.9": "req.1"}
    assert v.stats == {"completed": 0, "declines": 2, "expiries": 0, "no_shows": 0}
    assert docs.volunteer_doc(v)["ratings"] == [{"request_id": "req.1", "points": 0.7}]


def test_a_first_version_hours_entry_gets_its_month_from_the_check_in():
    v1 = {"_id": "e-1", "request_id": "r-1", "volunteer_id": "v-1", "service_code": "care", "community": "c",
          "check_in_at": datetime(2026, 11, 30, 17, 0, tzinfo=UTC), "status": "in_progress",
          "approval": "pending", "history": []}
    e = docs.load("hours", v1)
    assert e.month == "2026-12" and e.version == 1  # 01:00 on 1 December in Shanghai


def test_a_first_version_service_definition_reads():
    s = docs.load("services", {"_id": "care", "revision": 3, "required_qualifications": ["first_aid"]})
    assert (s.code, s.revision, s.required_qualifications) == ("care", 3, ["first_aid"])


def test_the_current_shapes_read_back_unchanged():
    v1 = {"_id": "v-1", "name": "N", "community": "c-01", "lat": 39.9, "lon": 116.3, "created_at": T,
          "updated_at": T}
    v = docs.load("volunteers", v1)
    assert docs.load("volunteers", docs.volunteer_doc(v)) == v
