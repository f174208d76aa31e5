"""The volunteer: registry entry, verified qualifications and the record the service keeps of them
(stats, ratings, whom they serve). Names and phones stay in this service; events carry the id only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from civicgrid_matching.domain.model import RATING_POINTS, as_utc

#: what the registry lets staff set (the rest is the service's record of the person)
PROFILE_FIELDS = ("name", "phone", "community", "lat", "lon", "skills", "availability", "exceptions", "on_duty",
                  "weekly_hours_cap", "languages", "party_member", "work_unit")
#: counters on the record that the ranking's reliability reads
STATS = ("completed", "declines", "expiries", "no_shows")


@dataclass
class Qualification:
    code: str
    verified_by: str
    verified_at: datetime
    expires_at: datetime | None = None
    evidence: str | None = None

    def valid_at(self, t: datetime) -> bool:
        return self.expires_at is None or as_utc(self.expires_at) > t


@dataclass
class Volunteer:
    id: str
    name: str
    community: str
    lat: float
    lon: float
    created_at: datetime
    updated_at: datetime
    created_by: str = ""
    phone: str | None = None
    skills: list[str] = field(default_factory=list)
    availability: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    on_duty: bool = True
    weekly_hours_cap: float = 0.0
    languages: list[str] = field(default_factory=list)
    party_member: bool = False
    work_unit: str | None = None
    qualifications: dict[str, Qualification] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS, 0))
    #: request id -> rating points (a later rating of the same request replaces the earlier one)
    ratings: dict[str, float] = field(default_factory=dict)
    #: resident_ref -> the request through which the volunteer serves that resident
    serves: dict[str, str] = field(default_factory=dict)
    version: int = 0

    @classmethod
    def register(cls, vid: str, profile: dict[str, Any], *, by: str, now: datetime) -> Volunteer:
        return cls(id=vid, created_at=now, updated_at=now, created_by=by,
                   **{k: v for k, v in profile.items() if k in PROFILE_FIELDS})

    def change(self, profile: dict[str, Any], now: datetime) -> None:
        for k, v in profile.items():
            if k in PROFILE_FIELDS:
                setattr(self, k, v)
        self.updated_at = now

    def verify(self, q: Qualification) -> None:
        self.qualifications[q.code] = q
        self.updated_at = q.verified_at

    def count(self, stat: str, now: datetime) -> None:
        if stat not in STATS:
            raise ValueError(f"unknown statistic {stat!r}")
        self.stats[stat] = self.stats.get(stat, 0) + 1
        self.updated_at = now

    def rate(self, request_id: str, rating: str, now: datetime) -> bool:
        """Record a resident's rating of a request this volunteer served; False if unchanged."""
        points = RATING_POINTS[rating]
        if self.ratings.get(request_id) == points:
            return False
        self.ratings[request_id] = points
        self.updated_at = now
        return True

    def starts_serving(self, resident_ref: str, request_id: str, now: datetime) -> bool:
        if self.serves.get(resident_ref) == request_id:
            return False
        self.serves[resident_ref] = request_id
        self.updated_at = now
        return True

    @property
    def rating_mean(self) -> float | None:
        r = list(self.ratings.values())
        return round(sum(r) / len(r), 3) if r else None
