"""The working calendar and the one way civicgrid turns (start, hours, calendar kind) into a due instant.

The street office keeps one calendar per year: its time zone, working weekdays, working periods,
public holidays and make-up working days (调休上班日). Each change is an event on the bus
(``civicgrid.calendar.year_defined`` on ``intake.calendar.v1``), so every service and replica holds
the same calendar. A deadline is computed once, by the service that starts its clock, with
:func:`due_at`, and carried in the event that starts the clock; nobody recomputes it afterwards.

A year nobody defined works on the working week of the nearest defined year (its weekdays and
periods), with no holidays; the year :data:`OFFICIAL_2026` is the shipped default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from civicgrid_contracts.values import Calendar

#: how far ahead a due time is looked for before the calendar is declared unusable
MAX_DAYS = 3660
#: the office's time zone unless a year's calendar says otherwise (also how times are shown)
DEFAULT_TIMEZONE = "Asia/Shanghai"
OFFICE_ZONE = ZoneInfo(DEFAULT_TIMEZONE)


class WorkingPeriod(BaseModel):
    """One working period of a working day, local time, ``start`` inclusive, ``end`` exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time


class CalendarYear(BaseModel):
    """The working calendar of one year, as the street office publishes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: int = Field(ge=2000, le=2200)
    timezone: str = Field(default=DEFAULT_TIMEZONE, max_length=64, description="IANA time zone of the office")
    working_weekdays: tuple[int, ...] = Field(default=(1, 2, 3, 4, 5), max_length=7,
                                              description="ISO weekdays that are working days (1 = Monday)")
    periods: tuple[WorkingPeriod, ...] = Field(
        default=(WorkingPeriod(start=time(9), end=time(12)), WorkingPeriod(start=time(13, 30), end=time(18))),
        min_length=1, max_length=8, description="Working periods of a working day, local time")
    holidays: tuple[date, ...] = Field(default=(), max_length=366, description="Public holidays (no work)")
    makeup_workdays: tuple[date, ...] = Field(
        default=(), max_length=366, description="Make-up working days (调休上班日): weekend days that are worked")
    source: str | None = Field(default=None, max_length=500, description="Where the holidays come from")


def calendar_defects(cal: CalendarYear) -> list[dict[str, str]]:
    """Every defect of a year's calendar, each naming its field; empty when the calendar is usable."""
    defects: list[dict[str, str]] = []

    def defect(field: str, message: str) -> None:
        defects.append({"field": field, "message": message})

    try:
        ZoneInfo(cal.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        defect("timezone", f"unknown time zone {cal.timezone!r}")
    for i, d in enumerate(cal.working_weekdays):
        if not 1 <= d <= 7:
            defect(f"working_weekdays/{i}", f"{d} is not an ISO weekday (1 = Monday ... 7 = Sunday)")
    if len(set(cal.working_weekdays)) != len(cal.working_weekdays):
        defect("working_weekdays", "a weekday is listed twice")
    for i, p in enumerate(cal.periods):
        if p.end <= p.start:
            defect(f"periods/{i}", f"period {p.start:%H:%M}-{p.end:%H:%M} ends before it starts")
    ordered = sorted(enumerate(cal.periods), key=lambda ip: ip[1].start)
    for (_, a), (j, b) in zip(ordered, ordered[1:], strict=False):
        if b.start < a.end:
            defect(f"periods/{j}", f"period {b.start:%H:%M}-{b.end:%H:%M} overlaps {a.start:%H:%M}-{a.end:%H:%M}")
    for name in ("holidays", "makeup_workdays"):
        for i, d in enumerate(getattr(cal, name)):
            if d.year != cal.year:
                defect(f"{name}/{i}", f"{d.isoformat()} is not in {cal.year}")
    for d in sorted(set(cal.holidays) & set(cal.makeup_workdays)):
        defect("makeup_workdays", f"{d.isoformat()} is both a holiday and a make-up working day")
    if not defects and not any(_is_working_day(cal, date(cal.year, 1, 1) + timedelta(days=n))
                               for n in range((date(cal.year + 1, 1, 1) - date(cal.year, 1, 1)).days)):
        defect("working_weekdays", f"{cal.year} has no working day")
    return defects


def _is_working_day(cal: CalendarYear, d: date) -> bool:
    if d in cal.makeup_workdays:
        return True
    if d in cal.holidays:
        return False
    return d.isoweekday() in cal.working_weekdays


def _days(first: str, last: str) -> tuple[date, ...]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return tuple(a + timedelta(days=n) for n in range((b - a).days + 1))


#: The official calendar of 2026: 国务院办公厅关于2026年部分节假日安排的通知 (State Council General
#: Office, November 2025). Holidays are the whole holiday periods; make-up days are the weekend days
#: worked in exchange.
OFFICIAL_2026 = CalendarYear(
    year=2026,
    holidays=(
        _days("2026-01-01", "2026-01-03") + _days("2026-02-15", "2026-02-23") + _days("2026-04-04", "2026-04-06")
        + _days("2026-05-01", "2026-05-05") + _days("2026-06-19", "2026-06-21") + _days("2026-09-25", "2026-09-27")
        + _days("2026-10-01", "2026-10-07")
    ),
    makeup_workdays=tuple(date.fromisoformat(d) for d in (
        "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10")),
    source="国务院办公厅关于2026年部分节假日安排的通知 (State Council General Office, November 2025)",
)


class WorkingCalendar:
    """The calendars of every defined year, as one object to compute with. Immutable: a change of the
    calendar builds a new one (``with_year``), so a computation never sees half a change."""

    def __init__(self, years: Mapping[int, CalendarYear] | Iterable[CalendarYear] = ()) -> None:
        items = years.values() if isinstance(years, Mapping) else years
        self.years: dict[int, CalendarYear] = {c.year: c for c in items}
        self._windows: dict[date, tuple[tuple[datetime, datetime], ...]] = {}
        self._zones: dict[str, ZoneInfo] = {}

    def with_year(self, cal: CalendarYear) -> WorkingCalendar:
        return WorkingCalendar({**self.years, cal.year: cal})

    def year(self, y: int) -> CalendarYear:
        """The calendar of year ``y``; an undefined year takes the working week of the nearest defined
        year (the later one on a tie), without holidays."""
        if y in self.years:
            return self.years[y]
        if not self.years:
            return CalendarYear(year=y)
        near = min(self.years, key=lambda k: (abs(k - y), -k))
        return self.years[near].model_copy(update={"year": y, "holidays": (), "makeup_workdays": (), "source": None})

    def zone(self, y: int) -> ZoneInfo:
        name = self.year(y).timezone
        if name not in self._zones:
            self._zones[name] = ZoneInfo(name)
        return self._zones[name]

    def is_working_day(self, d: date) -> bool:
        return _is_working_day(self.year(d.year), d)

    def windows(self, d: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working periods of local date ``d`` as instants (empty on a day off)."""
        got = self._windows.get(d)
        if got is None:
            cal, tz = self.year(d.year), self.zone(d.year)
            got = tuple((datetime.combine(d, p.start, tz), datetime.combine(d, p.end, tz))
                        for p in sorted(cal.periods, key=lambda p: p.start)) if _is_working_day(cal, d) else ()
            self._windows[d] = got
        return got

    def local_date(self, t: datetime) -> date:
        return t.astimezone(self.zone(t.astimezone(UTC).year)).date()


#: the calendar every service starts with, before the bus says otherwise
DEFAULT_CALENDAR = WorkingCalendar([OFFICIAL_2026])


def _ceil_second(t: datetime) -> datetime:
    return t if not t.microsecond else t.replace(microsecond=0) + timedelta(seconds=1)


def due_at(start: datetime, hours: float, kind: Calendar, calendar: WorkingCalendar) -> datetime:
    """THE due-time calculation: the instant ``hours`` after ``start``, counted in working hours of
    ``calendar`` (``kind == "business"``) or in wall-clock hours (``kind == "calendar"``), in UTC and
    rounded up to the whole second. Every time limit of civicgrid goes through here."""
    if start.tzinfo is None:
        raise ValueError("start must be an aware datetime")
    if hours < 0:
        raise ValueError("hours must not be negative")
    if kind == "calendar":
        return _ceil_second((start + timedelta(hours=hours)).astimezone(UTC))
    remaining = timedelta(hours=hours)
    d = calendar.local_date(start) - timedelta(days=1)  # a zone change at new year may shift the date
    for _ in range(MAX_DAYS):
        for a, b in calendar.windows(d):
            if b <= start:
                continue
            begin = max(a, start)
            if begin + remaining <= b:
                return _ceil_second((begin + remaining).astimezone(UTC))
            remaining -= b - begin
        d += timedelta(days=1)
    raise ValueError("no working time within ten years: check the calendar")


def working_hours_between(a: datetime, b: datetime, kind: Calendar, calendar: WorkingCalendar) -> float:
    """Hours in ``[a, b)`` counted as ``kind`` (negative when ``b`` is before ``a``): how late a clock is."""
    if b < a:
        return -working_hours_between(b, a, kind, calendar)
    if kind == "calendar":
        return (b - a).total_seconds() / 3600
    total = timedelta()
    d, last = calendar.local_date(a) - timedelta(days=1), calendar.local_date(b) + timedelta(days=1)
    while d <= last:
        for s, e in calendar.windows(d):
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                total += hi - lo
        d += timedelta(days=1)
    return total.total_seconds() / 3600
