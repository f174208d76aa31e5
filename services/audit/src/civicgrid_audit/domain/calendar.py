"""The working calendar: business hours in a time zone, with public holidays and make-up days.

Pure; no I/O. ``add_hours(start, h)`` gives the moment ``h`` working hours after ``start``;
``hours_between(a, b)`` the working hours in ``[a, b)``. Calendar-hour limits use
``calendar=False`` and are plain timedelta arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS = 3660  # never search more than ten years ahead


def _parse_time(s: str) -> time:
    h, m = s.strip().split(":")
    return time(int(h), int(m))


@dataclass(frozen=True)
class WorkingCalendar:
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    working_weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    periods: tuple[tuple[time, time], ...] = ((time(9), time(12)), (time(13, 30), time(18)))
    holidays: frozenset[date] = frozenset()
    makeup_days: frozenset[date] = frozenset()

    @classmethod
    def from_strings(cls, *, timezone: str = "Asia/Shanghai", working_days: str = "1,2,3,4,5",
                     working_hours: str = "09:00-12:00,13:30-18:00", holidays: str | Iterable[str] = "",
                     makeup_days: str | Iterable[str] = "") -> WorkingCalendar:
        def dates(v: str | Iterable[str]) -> frozenset[date]:
            items = v.split(",") if isinstance(v, str) else list(v)
            return frozenset(date.fromisoformat(x.strip()) for x in items if x.strip())

        periods = []
        for part in working_hours.split(","):
            a, b = part.split("-")
            ta, tb = _parse_time(a), _parse_time(b)
            if tb <= ta:
                raise ValueError(f"working period {part!r} ends before it starts")
            periods.append((ta, tb))
        periods.sort()
        return cls(tz=ZoneInfo(timezone), working_weekdays=frozenset(int(d) for d in working_days.split(",") if d),
                   periods=tuple(periods), holidays=dates(holidays), makeup_days=dates(makeup_days))

    def is_working_day(self, d: date) -> bool:
        if d in self.makeup_days:
            return True
        if d in self.holidays:
            return False
        return d.isoweekday() in self.working_weekdays

    def _windows(self, d: date) -> list[tuple[datetime, datetime]]:
        if not self.is_working_day(d):
            return []
        return [(datetime.combine(d, a, self.tz), datetime.combine(d, b, self.tz)) for a, b in self.periods]

    def add_hours(self, start: datetime, hours: float, *, business: bool = True) -> datetime:
        if not business:
            return start + timedelta(hours=hours)
        remaining = timedelta(hours=hours)
        local = start.astimezone(self.tz)
        d = local.date()
        for _ in range(MAX_DAYS):
            for a, b in self._windows(d):
                if b <= local:
                    continue
                s = max(a, local)
                if s + remaining <= b:
                    return (s + remaining).astimezone(start.tzinfo)
                remaining -= b - s
            d += timedelta(days=1)
        raise ValueError("no working time within ten years: check the calendar")

    def hours_between(self, a: datetime, b: datetime, *, business: bool = True) -> float:
        if b <= a:
            return -self.hours_between(b, a, business=business) if b < a else 0.0
        if not business:
            return (b - a).total_seconds() / 3600
        total = timedelta()
        la, lb = a.astimezone(self.tz), b.astimezone(self.tz)
        d = la.date()
        while d <= lb.date():
            for s, e in self._windows(d):
                lo, hi = max(s, la), min(e, lb)
                if hi > lo:
                    total += hi - lo
            d += timedelta(days=1)
        return total.total_seconds() / 3600
