"""The fairness simulation (a tool of the bench, not of the service): many requests against equally qualified volunteers, using the very
same index and scoring code as the service, compared with nearest-first.

Every request is given to the top-ranked volunteer (who accepts) and the hours credit that
volunteer's fairness counter. Reported: Gini coefficient of hours (goal < 0.3) and the average
distance relative to nearest-first (goal within 20 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from civicgrid_matching.domain import scoring
from civicgrid_matching.domain.index import MatchQuery, VolunteerIndex
from civicgrid_matching.domain.model import DAYS, gini
from civicgrid_matching.domain.volunteer import Volunteer

ANCHOR = (39.90, 116.30)
SPAN_DEG = (0.045, 0.059)  # ~5 km north, ~5 km east


@dataclass(frozen=True)
class FairnessResult:
    policy: str
    requests: int
    volunteers: int
    gini_hours: float
    mean_distance_m: float
    served_share: float
    max_hours: float


def _volunteers(rng: np.random.Generator, n: int) -> list[Volunteer]:
    full_week = [{"day": d, "start": "00:00", "end": "24:00"} for d in DAYS]
    lat = ANCHOR[0] + rng.random(n) * SPAN_DEG[0]
    lon = ANCHOR[1] + rng.random(n) * SPAN_DEG[1]
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return [Volunteer(id=f"v{i:05d}", name=f"v{i}", community="sim", lat=float(lat[i]), lon=float(lon[i]),
                      created_at=t, updated_at=t, skills=["elderly_care_home"], availability=full_week,
                      weekly_hours_cap=10_000) for i in range(n)]


def run(policy: str, *, requests: int = 10_000, volunteers: int = 2_000, seed: int = 7,
        weights: scoring.Weights | None = None) -> FairnessResult:
    rng = np.random.default_rng(seed)
    if policy == "nearest":
        w = scoring.Weights(distance=1.0, fairness=0.0, rating=0.0, reliability=0.0, continuity=0.0)
    else:
        w = weights or scoring.Weights()
    index = VolunteerIndex(ZoneInfo("Asia/Shanghai"), w, capacity=volunteers)
    for v in _volunteers(rng, volunteers):
        index.upsert(v)
    rlat = ANCHOR[0] + rng.random(requests) * SPAN_DEG[0]
    rlon = ANCHOR[1] + rng.random(requests) * SPAN_DEG[1]
    rhours = rng.choice([1.0, 1.5, 2.0, 3.0], size=requests)
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    hours = np.zeros(volunteers)
    dists = np.zeros(requests)
    for k in range(requests):
        q = MatchQuery(lat=float(rlat[k]), lon=float(rlon[k]), service_code="elderly_care_home",
                       start=t0 + timedelta(minutes=k), hours=float(rhours[k]), distance_limit_m=3000)
        best = index.match(q, limit=1).candidates[0]
        i = index.pos[best.volunteer_id]
        hours[i] += rhours[k]
        dists[k] = best.distance_m
        index.add_recent_hours(best.volunteer_id, float(rhours[k]))
    return FairnessResult(policy, requests, volunteers, gini(hours), float(dists.mean()),
                          float((hours > 0).mean()), float(hours.max()))
