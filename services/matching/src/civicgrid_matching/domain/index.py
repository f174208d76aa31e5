"""The in-memory matching index: every volunteer as a row of numpy arrays.

Built from the store at start, updated incrementally on every registry change and booking, and
refreshed periodically for changes other replicas made. A query filters all rows with vectorised
masks (on duty, skill, qualification valid until the end of the visit, distance, weekly
availability slots, weekly hours cap), scores the survivors (see ``scoring``) and walks them in
rank order, checking the few remaining rules that are per-person lists (availability exceptions,
overlapping bookings). The store stays the authority: an accept re-checks the booking atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from civicgrid_matching.domain import scoring
from civicgrid_matching.domain.model import (
    SLOTS_PER_WEEK,
    as_utc,
    booked_hours_in_week,
    needed_slot_range,
    overlaps,
    week_key,
    windows_to_slots,
)
from civicgrid_matching.domain.schedule import Booking
from civicgrid_matching.domain.volunteer import Volunteer

EARTH_R = 6_371_008.8


@dataclass(frozen=True)
class MatchQuery:
    lat: float
    lon: float
    service_code: str
    start: datetime
    hours: float
    required_qualifications: tuple[str, ...] = ()
    resident_ref: str | None = None
    recurring: bool = False
    distance_limit_m: float = 3000.0


def why_text(rank: int, score: float, distance_m: float, c: dict[str, float]) -> str:
    """The ranking explained in one line (computed on read, not stored)."""
    return (f"rank {rank}: score {score:.3f} = distance {c['distance']:.2f} ({distance_m:.0f} m), "
            f"fairness {c['fairness']:.2f} ({c['recent_hours']:.1f} h recently), rating {c['rating']:.2f}, "
            f"reliability {c['reliability']:.2f}, continuity {c['continuity']:.0f}")


@dataclass
class Candidate:
    volunteer_id: str
    rank: int
    score: float
    distance_m: float
    components: dict[str, float]

    def why(self) -> str:
        return why_text(self.rank, self.score, self.distance_m, self.components)

    def as_dict(self) -> dict:
        return {"volunteer_id": self.volunteer_id, "rank": self.rank, "score": round(self.score, 6),
                "distance_m": round(self.distance_m, 1), "components": {k: round(v, 4) for k, v in
                                                                          self.components.items()},
                "why": self.why()}


@dataclass
class MatchResult:
    candidates: list[Candidate]
    funnel: dict[str, int] = field(default_factory=dict)

    @property
    def considered(self) -> int:
        return self.funnel.get("under_hours_cap", 0)

    def reason(self) -> str:
        if self.candidates:
            return "matched"
        steps = ", ".join(f"{k} {v}" for k, v in self.funnel.items())
        return f"no eligible volunteer left ({steps})"


class VolunteerIndex:
    def __init__(self, tz: ZoneInfo, weights: scoring.Weights | None = None, capacity: int = 1024) -> None:
        self.tz = tz
        self.weights = weights or scoring.Weights()
        self.n = 0
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self._cap = capacity
        self.lat = np.zeros(capacity)
        self.lon = np.zeros(capacity)
        self.on_duty = np.zeros(capacity, dtype=bool)
        self.hours_cap = np.zeros(capacity, dtype=np.float32)
        self.recent_hours = np.zeros(capacity, dtype=np.float32)
        self.rating = np.full(capacity, scoring.RATING_PRIOR, dtype=np.float32)
        self.reliability = np.ones(capacity, dtype=np.float32)
        #: slot x volunteer (slot-major: a query reads a few slots' contiguous rows)
        self.avail = np.zeros((SLOTS_PER_WEEK, capacity), dtype=bool)
        self.skills: dict[str, np.ndarray] = {}
        self.quals: dict[str, np.ndarray] = {}  # expiry, epoch seconds; 0 = none
        self.exceptions: dict[int, list[tuple[float, float]]] = {}
        self.bookings: dict[int, list[dict]] = {}
        self.serves: dict[str, set[int]] = {}  # resident_ref -> rows of volunteers serving them
        self._week_booked: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ building

    def _grow(self) -> None:
        new = self._cap * 2

        def g(a: np.ndarray) -> np.ndarray:
            b = np.zeros((new,) + a.shape[1:], dtype=a.dtype)
            b[: self._cap] = a
            return b

        self.lat, self.lon, self.on_duty = g(self.lat), g(self.lon), g(self.on_duty)
        self.hours_cap, self.recent_hours = g(self.hours_cap), g(self.recent_hours)
        self.rating, self.reliability = g(self.rating), g(self.reliability)
        avail = np.zeros((SLOTS_PER_WEEK, new), dtype=bool)
        avail[:, : self._cap] = self.avail
        self.avail = avail
        self.skills = {k: g(v) for k, v in self.skills.items()}
        self.quals = {k: g(v) for k, v in self.quals.items()}
        self._week_booked = {k: g(v) for k, v in self._week_booked.items()}
        self._cap = new

    def _row(self, vid: str) -> int:
        i = self.pos.get(vid)
        if i is None:
            if self.n == self._cap:
                self._grow()
            i = self.n
            self.n += 1
            self.ids.append(vid)
            self.pos[vid] = i
        return i

    def upsert(self, v: Volunteer) -> None:
        """Put a volunteer (as the registry holds them) into the index."""
        i = self._row(v.id)
        self.lat[i], self.lon[i] = v.lat, v.lon
        self.on_duty[i] = bool(v.on_duty)
        self.hours_cap[i] = float(v.weekly_hours_cap)
        self.avail[:, i] = windows_to_slots(v.availability)
        skills = set(v.skills)
        for code in skills - self.skills.keys():
            self.skills[code] = np.zeros(self._cap, dtype=bool)
        for code, arr in self.skills.items():
            arr[i] = code in skills
        for code in v.qualifications.keys() - self.quals.keys():
            self.quals[code] = np.zeros(self._cap)
        for code, arr in self.quals.items():
            q = v.qualifications.get(code)
            arr[i] = (as_utc(q.expires_at).timestamp() if q.expires_at else math.inf) if q else 0.0
        exc = [(as_utc(e["start"]).timestamp(), as_utc(e["end"]).timestamp()) for e in v.exceptions]
        if exc:
            self.exceptions[i] = exc
        else:
            self.exceptions.pop(i, None)
        ratings = list(v.ratings.values())
        self.rating[i] = scoring.rating_score(float(sum(ratings)), float(len(ratings)))
        st = v.stats
        self.reliability[i] = scoring.reliability_score(st.get("completed", 0), st.get("no_shows", 0),
                                                        st.get("declines", 0), st.get("expiries", 0))
        for ref in v.serves:
            self.serves.setdefault(ref, set()).add(i)

    def set_bookings(self, vid: str, bookings: list[Booking], now: datetime | None = None) -> None:
        """Replace a volunteer's current bookings (released ones excluded)."""
        i = self.pos.get(vid)
        if i is None:
            return
        bookings = [b for b in bookings if b.active]
        self.bookings[i] = bookings
        now = now or datetime.now(UTC)
        since = now - timedelta(days=self.weights.recent_days)
        self.recent_hours[i] = sum(float(b.hours) for b in bookings if since <= as_utc(b.start) <= now + timedelta(
            days=7) or (b.weekly and as_utc(b.start) <= now))
        for wk, arr in self._week_booked.items():
            arr[i] = booked_hours_in_week(bookings, wk, self.tz)

    def add_recent_hours(self, vid: str, hours: float) -> None:
        """Credit hours to the fairness counter (e.g. simulations, deliveries without a booking)."""
        i = self.pos.get(vid)
        if i is not None:
            self.recent_hours[i] += hours

    def week_booked(self, wk: str) -> np.ndarray:
        arr = self._week_booked.get(wk)
        if arr is None:
            arr = np.zeros(self._cap, dtype=np.float32)
            for i, bs in self.bookings.items():
                if bs:
                    arr[i] = booked_hours_in_week(bs, wk, self.tz)
            if len(self._week_booked) > 16:
                self._week_booked.pop(next(iter(self._week_booked)))
            self._week_booked[wk] = arr
        return arr

    # ------------------------------------------------------------------ querying

    def match(self, q: MatchQuery, *, limit: int, exclude: set[str] | frozenset[str] = frozenset(),
              full: bool = False) -> MatchResult:
        n = self.n
        funnel: dict[str, int] = {"registered": n}
        skill = self.skills.get(q.service_code)
        if skill is None or n == 0:
            return MatchResult([], {**funnel, "with_skill_on_duty": 0})
        start = as_utc(q.start)
        end_ts = start.timestamp() + q.hours * 3600
        mask = skill[:n] & self.on_duty[:n]
        funnel["with_skill_on_duty"] = int(mask.sum())
        for code in q.required_qualifications:
            qa = self.quals.get(code)
            if qa is None:
                mask[:] = False
                break
            mask &= qa[:n] > end_ts
        idx = np.flatnonzero(mask)
        funnel["qualified"] = len(idx)
        # equirectangular distance: exact enough within a district (error < 0.1 % at 10 km)
        lat0 = math.radians(q.lat)
        dy = (self.lat[idx] - q.lat) * (math.pi / 180 * EARTH_R)
        dx = (self.lon[idx] - q.lon) * (math.pi / 180 * EARTH_R * math.cos(lat0))
        dist = np.sqrt(dx * dx + dy * dy)
        keep = dist <= q.distance_limit_m
        idx, dist = idx[keep], dist[keep]
        funnel["within_distance"] = len(idx)
        slots = needed_slot_range(start, q.hours, self.tz)
        # one contiguous row per slot (a visit touches a handful): several times faster than a 2-D
        # fancy index [volunteers, slots] followed by .all()
        keep = self.avail[slots[0]][idx]
        for slot in slots[1:]:
            keep &= self.avail[slot][idx]
        idx, dist = idx[keep], dist[keep]
        funnel["available"] = len(idx)
        wk = week_key(start, self.tz)
        keep = self.week_booked(wk)[idx] + q.hours <= self.hours_cap[idx]
        idx, dist = idx[keep], dist[keep]
        funnel["under_hours_cap"] = len(idx)
        if len(idx) == 0:
            return MatchResult([], funnel)
        cont = np.zeros(len(idx), dtype=np.float32)
        if q.resident_ref:
            serving = self.serves.get(q.resident_ref)
            if serving:
                cont = np.isin(idx, np.fromiter(serving, dtype=np.int64)).astype(np.float32)
        recent = self.recent_hours[idx]
        comps = scoring.components(dist, recent, self.rating[idx], self.reliability[idx], cont, self.weights)
        score = scoring.total(comps, self.weights, q.recurring)
        want = limit + len(exclude) + 16
        if not full and len(idx) > want * 4:
            top = np.argpartition(-score, want)[:want]
            order = top[np.lexsort((idx[top], -score[top]))]
        else:
            order = np.lexsort((idx, -score))
        out: list[Candidate] = []
        s_ts = start.timestamp()
        for j in order:
            i = int(idx[j])
            vid = self.ids[i]
            if vid in exclude:
                continue
            if any(a < end_ts and s_ts < b for a, b in self.exceptions.get(i, ())):
                continue
            if any(overlaps(b.start, b.hours, b.weekly, start, q.hours, q.recurring)
                   for b in self.bookings.get(i, ())):
                continue
            c = {k: float(v[j]) for k, v in comps.items()}
            c["recent_hours"] = float(recent[j])
            out.append(Candidate(vid, len(out) + 1, float(score[j]), float(dist[j]), c))
            if len(out) >= limit:
                break
        if len(out) < limit and len(order) < len(idx):
            # the partial top ran out (many exclusions/conflicts): rank everyone
            return self.match(q, limit=limit, exclude=exclude, full=True)
        return MatchResult(out, funnel)

