"""A volunteer's schedule: the bookings that keep them from being double booked or over their
weekly hours cap. One aggregate per volunteer, so one guarded write settles every race between
accepts of the same person."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from civicgrid_matching.domain.errors import DoubleBooked, HoursCapExceeded
from civicgrid_matching.domain.model import as_utc, booked_hours_in_week, overlaps, week_key

HELD, BOOKED, RELEASED = "held", "booked", "released"
#: one-off bookings that ended this long ago are dropped from the schedule
PRUNE_AFTER = timedelta(days=35)


@dataclass
class Booking:
    request_id: str
    start: datetime
    hours: float
    weekly: bool
    state: str
    changed_at: datetime

    @property
    def active(self) -> bool:
        return self.state != RELEASED


@dataclass
class Schedule:
    volunteer_id: str
    bookings: list[Booking] = field(default_factory=list)
    updated_at: datetime | None = None
    version: int = 0

    def active(self) -> list[Booking]:
        return [b for b in self.bookings if b.active]

    def booking(self, request_id: str) -> Booking | None:
        return next((b for b in self.bookings if b.request_id == request_id), None)

    def conflict(self, request_id: str, start: datetime, hours: float, weekly: bool, cap: float,
                 tz: ZoneInfo) -> str | None:
        """Why this volunteer cannot take the booking (``double_booked``, ``hours_cap``), or None."""
        others = [b for b in self.active() if b.request_id != request_id]
        if any(overlaps(b.start, b.hours, b.weekly, start, hours, weekly) for b in others):
            return "double_booked"
        if booked_hours_in_week(others, week_key(start, tz), tz) + hours > cap + 1e-9:
            return "hours_cap"
        return None

    def hold(self, request_id: str, start: datetime, hours: float, weekly: bool, cap: float, tz: ZoneInfo,
             now: datetime) -> bool:
        """Hold the slot for an accept in progress; False when this request already holds it."""
        existing = self.booking(request_id)
        if existing and existing.active:
            return False
        why = self.conflict(request_id, start, hours, weekly, cap, tz)
        if why == "double_booked":
            raise DoubleBooked("The volunteer already has a booking at an overlapping time")
        if why == "hours_cap":
            raise HoursCapExceeded("This would take the volunteer over their weekly hours cap")
        self.bookings = [b for b in self.bookings if b.request_id != request_id and not self._stale(b, now)]
        self.bookings.append(Booking(request_id, start, hours, weekly, HELD, now))
        self.updated_at = now
        return True

    def settle(self, request_id: str, state: str, now: datetime, hours: float | None = None) -> bool:
        """Confirm (``booked``) or release a booking, optionally with the hours actually given."""
        b = self.booking(request_id)
        if b is None or (b.state == state and (hours is None or b.hours == hours)):
            return False
        b.state, b.changed_at = state, now
        if hours is not None:
            b.hours = hours
        self.updated_at = now
        return True

    def stale_holds(self, cutoff: datetime) -> list[Booking]:
        return [b for b in self.bookings if b.state == HELD and as_utc(b.changed_at) <= cutoff]

    @staticmethod
    def _stale(b: Booking, now: datetime) -> bool:
        return not b.weekly and as_utc(b.start) < now - PRUNE_AFTER
