"""Pure domain rules: time slots, overlaps (incl. weekly recurrence), hours per week, scoring, Gini,
and the fairness simulation (10,000 requests vs 2,000 equally qualified volunteers)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from civicgrid_matching.domain import scoring
from civicgrid_matching.domain.index import MatchQuery, VolunteerIndex
from civicgrid_matching.domain.model import (
    booked_hours_in_week,
    gini,
    needed_slot_range,
    overlaps,
    week_key,
    windows_to_slots,
)
from civicgrid_matching.domain.schedule import BOOKED, Booking
from civicgrid_matching.domain.volunteer import Volunteer

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import simulation  # noqa: E402 - the fairness simulation lives with the bench that reports it

TZ = ZoneInfo("Asia/Shanghai")
MON_09 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # Monday 09:00 in Beijing


def test_slots_and_needed_range_in_local_time():
    s = windows_to_slots([{"day": "mon", "start": "08:00", "end": "12:00"}])
    assert s.sum() == 8 and s[16] and not s[24]
    r = needed_slot_range(MON_09, 2, TZ)
    assert list(r) == [18, 19, 20, 21]
    sunday_late = datetime(2026, 12, 13, 15, 0, tzinfo=UTC)  # Sunday 23:00 local, wraps to Monday
    assert list(needed_slot_range(sunday_late, 2, TZ)) == [334, 335, 0, 1]


def test_overlaps_one_off_and_weekly():
    assert overlaps(MON_09, 2, False, MON_09 + timedelta(hours=1), 2, False)
    assert not overlaps(MON_09, 2, False, MON_09 + timedelta(hours=2), 2, False)
    assert overlaps(MON_09, 2, True, MON_09 + timedelta(days=14, hours=1), 1, False)
    assert not overlaps(MON_09, 2, True, MON_09 - timedelta(days=7), 2, False)  # before the series starts
    assert not overlaps(MON_09, 2, True, MON_09 + timedelta(days=15), 2, True)
    assert overlaps(MON_09, 2, True, MON_09 + timedelta(days=21, minutes=30), 1, True)


def test_booked_hours_per_week_count_recurring_from_their_start():
    bookings = [booking(MON_09, 2, True), booking(MON_09 + timedelta(days=2), 1.5, False)]
    wk = week_key(MON_09, TZ)
    nxt = week_key(MON_09 + timedelta(days=7), TZ)
    prev = week_key(MON_09 - timedelta(days=7), TZ)
    assert booked_hours_in_week(bookings, wk, TZ) == 3.5
    assert booked_hours_in_week(bookings, nxt, TZ) == 2
    assert booked_hours_in_week(bookings, prev, TZ) == 0


def test_gini():
    assert gini([1, 1, 1, 1]) == 0
    assert abs(gini([0, 0, 0, 10]) - 0.75) < 1e-9


def _index(docs):
    ix = VolunteerIndex(TZ, capacity=2)  # small capacity: exercises growth
    for d in docs:
        ix.upsert(d)
    return ix


def booking(start, hours, weekly, request_id="r"):
    return Booking(request_id, start, hours, weekly, BOOKED, start)


def _vol(vid, north_m, **kw):
    d = {"name": vid, "lat": 39.9 + north_m / 111_195, "lon": 116.3, "skills": ["elderly_care_home"], "community": "c",
         "availability": [{"day": "mon", "start": "08:00", "end": "18:00"}], "weekly_hours_cap": 10, "on_duty": True}
    d.update(kw)
    record = {k: d.pop(k) for k in ("ratings", "serves") if k in d}
    v = Volunteer.register(vid, d, by="test", now=MON_09)
    for k, value in record.items():
        setattr(v, k, value)
    return v


def test_ranking_weighs_distance_fairness_rating_and_continuity():
    ix = _index([_vol("near", 100), _vol("busy-near", 90), _vol("far", 1500),
                 _vol("liked", 300, ratings={"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}),
                 _vol("serving", 2000, serves={"res-1": "r-0"})])
    ix.set_bookings("busy-near", [booking(MON_09 - timedelta(days=3), 12, False)], now=MON_09)
    q = MatchQuery(lat=39.9, lon=116.3, service_code="elderly_care_home", start=MON_09, hours=2)
    res = ix.match(q, limit=5)
    order = [c.volunteer_id for c in res.candidates]
    assert order.index("near") < order.index("busy-near")  # 12 h recently outweighs 10 m
    assert order[-1] in ("far", "serving")
    assert "fairness" in res.candidates[0].why()
    rec = ix.match(MatchQuery(lat=39.9, lon=116.3, service_code="elderly_care_home", start=MON_09, hours=2,
                              resident_ref="res-1", recurring=True), limit=1)
    assert rec.candidates[0].volunteer_id == "serving"


def test_eligibility_funnel_explains_unmatched():
    ix = _index([_vol("off", 10, on_duty=False), _vol("weekend", 10, availability=[
        {"day": "sat", "start": "08:00", "end": "18:00"}]), _vol("far", 9000)])
    res = ix.match(MatchQuery(lat=39.9, lon=116.3, service_code="elderly_care_home", start=MON_09, hours=2),
                   limit=3)
    assert res.candidates == []
    assert res.funnel["with_skill_on_duty"] == 2 and res.funnel["within_distance"] == 1
    assert res.funnel["available"] == 0 and "available 0" in res.reason()


def test_scores_are_in_unit_range():
    c = scoring.components(np.array([10.0, 500.0]), np.array([0.0, 8.0]), np.array([0.8, 1.0]),
                           np.array([1.0, 0.5]), np.array([0.0, 1.0]), scoring.Weights())
    t = scoring.total(c, scoring.Weights())
    assert ((t >= 0) & (t <= 1)).all()


def test_fairness_simulation_10k_requests_2k_volunteers():
    fair = simulation.run("fair")
    nearest = simulation.run("nearest")
    print(f"fairness: Gini {fair.gini_hours:.3f} (nearest-first {nearest.gini_hours:.3f}); mean distance "
          f"{fair.mean_distance_m:.1f} m vs {nearest.mean_distance_m:.1f} m")
    assert fair.gini_hours < 0.3
    assert fair.mean_distance_m <= 1.2 * nearest.mean_distance_m
    assert fair.gini_hours < nearest.gini_hours
