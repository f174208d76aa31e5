"""Time limits in business or calendar hours (the street office's working week, Asia/Shanghai)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from civicgrid_contracts.values import TimeLimits

OFFICE_TZ = ZoneInfo("Asia/Shanghai")
#: Working periods of a business day (local time); 8 business hours a day, Monday to Friday.
PERIODS: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 0), time(18, 0)))
#: working hours in a week (five days of PERIODS): every seven days from a midnight hold exactly this
WEEK = 5 * sum((datetime.combine(datetime.min, b) - datetime.combine(datetime.min, a) for a, b in PERIODS),
               timedelta())


def add_business_hours(start: datetime, hours: float) -> datetime:
    """The moment ``hours`` working hours after ``start`` (working days Mon-Fri, PERIODS)."""
    remaining = timedelta(hours=hours)
    cur = start.astimezone(OFFICE_TZ)
    for _ in range(3660):  # at most ten years of days: a guard, never reached for sane limits
        if cur.weekday() < 5:
            for a, b in PERIODS:
                pa = cur.replace(hour=a.hour, minute=a.minute, second=0, microsecond=0)
                pb = cur.replace(hour=b.hour, minute=b.minute, second=0, microsecond=0)
                if cur >= pb:
                    continue
                begin = max(cur, pa)
                avail = pb - begin
                if remaining <= avail:
                    return (begin + remaining).astimezone(UTC)
                remaining -= avail
                cur = pb
        cur = (cur + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        if remaining > WEEK:  # whole weeks at once (a limit of weeks walked day by day cost 7% of intake's CPU)
            weeks = (remaining - timedelta(microseconds=1)) // WEEK
            cur += timedelta(days=7 * weeks)
            remaining -= weeks * WEEK
    raise ValueError("time limit too long")


def due_at(start: datetime, hours: float, calendar: str) -> datetime:
    if calendar == "calendar":
        return (start + timedelta(hours=hours)).astimezone(UTC)
    return add_business_hours(start, hours)


def expected_resolution(received_at: datetime, limits: TimeLimits) -> datetime:
    return due_at(received_at, limits.resolution_hours, limits.calendar)
