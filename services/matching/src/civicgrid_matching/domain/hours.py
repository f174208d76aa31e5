"""A volunteer's hours on one request: check in, check out, complete (ServiceDelivered), and the
staff's approval or correction. A correction never deletes: the old figure stays in ``history``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from civicgrid_contracts.events import matching as ev
from civicgrid_matching.domain.errors import NotCheckedOut
from civicgrid_matching.domain.events import Recorded, record
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.model import as_utc

ENTRY_NS = uuid.UUID("2b0c7f52-8a6e-4d0f-9a3c-1f6f0e5d9b21")
IN_PROGRESS, DELIVERED = "in_progress", "delivered"
PENDING, APPROVED, CORRECTED = "pending", "approved", "corrected"


def entry_id(request_id: str, volunteer_id: str) -> str:
    """One entry per request and volunteer: the id is the unique-key claim of a check-in."""
    return str(uuid.uuid5(ENTRY_NS, f"hours|{request_id}|{volunteer_id}"))


def checked_hours(start: datetime, end: datetime) -> float:
    """Checked-in time in hours, rounded to the quarter hour, at most 24."""
    return min(24.0, round((as_utc(end) - as_utc(start)).total_seconds() / 900) / 4)


def month_of(t: datetime, tz: ZoneInfo) -> str:
    return as_utc(t).astimezone(tz).strftime("%Y-%m")


@dataclass
class HoursEntry:
    id: str
    request_id: str
    volunteer_id: str
    service_code: str
    community: str | None
    check_in_at: datetime
    #: the month of the check-in in the service's time zone, ``YYYY-MM`` (set at check-in)
    month: str
    status: str = IN_PROGRESS
    check_out_at: datetime | None = None
    hours: float | None = None
    note: str | None = None
    delivered_at: datetime | None = None
    approval: str = PENDING
    approved_by: str | None = None
    approved_at: datetime | None = None
    rating: str | None = None
    history: list[dict] = field(default_factory=list)
    version: int = 0
    events: list[Recorded] = field(default_factory=list, repr=False)

    @classmethod
    def check_in(cls, match: Match, volunteer_id: str, now: datetime, tz: ZoneInfo) -> HoursEntry:
        match.assignment_of(volunteer_id)
        return cls(entry_id(match.request_id, volunteer_id), match.request_id, volunteer_id,
                   match.visit.service_code, match.visit.community, now, month_of(now, tz))

    def check_out(self, now: datetime) -> bool:
        if self.check_out_at is not None:
            return False
        self.check_out_at, self.hours = now, checked_hours(self.check_in_at, now)
        return True

    def complete(self, match: Match, note: str | None, now: datetime) -> bool:
        """Delivered: records ServiceDelivered; False when it already was."""
        if self.status == DELIVERED:
            return False
        self.check_out(now)
        self.status, self.note, self.delivered_at = DELIVERED, note, now
        payload = ev.ServiceDelivered(request_id=self.request_id, volunteer_id=self.volunteer_id, hours=self.hours,
                                      started_at=self.check_in_at, ended_at=self.check_out_at, note=note)
        self.events.append(record(payload, basis=match.basis, discriminator=self.volunteer_id,
                                  causation_id=match.cause_id, correlation_id=match.correlation_id, at=now))
        return True

    def approve(self, by: str, now: datetime) -> None:
        self._require_checked_out()
        self.approval, self.approved_by, self.approved_at = APPROVED, by, now
        self.history.append({"at": now, "by": by, "action": "approved", "hours": self.hours})

    def correct(self, by: str, hours: float, reason: str, now: datetime) -> None:
        self._require_checked_out()
        self.history.append({"at": now, "by": by, "action": "corrected", "from_hours": self.hours,
                             "to_hours": hours, "reason": reason})
        self.hours, self.approval, self.approved_by, self.approved_at = hours, CORRECTED, by, now

    def rate(self, rating: str) -> bool:
        if self.rating == rating:
            return False
        self.rating = rating
        return True

    def _require_checked_out(self) -> None:
        if self.hours is None:
            raise NotCheckedOut("The volunteer has not checked out yet")
