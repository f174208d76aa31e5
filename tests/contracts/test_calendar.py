"""The one due-time calculation (``civicgrid_contracts.calendar.due_at``): checked against a slow
reference on random calendars, instants and limits; the calendar's validation; and a guard that no
service computes a due time any other way."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicgrid_contracts.calendar import (
    DEFAULT_CALENDAR,
    OFFICIAL_2026,
    CalendarYear,
    WorkingCalendar,
    WorkingPeriod,
    calendar_defects,
    due_at,
    working_hours_between,
)

ROOT = Path(__file__).resolve().parents[2]
SH = ZoneInfo("Asia/Shanghai")


# ----------------------------------------------------------------------------- the slow reference


def reference_due(start: datetime, minutes: int, cal: WorkingCalendar) -> datetime:
    """Walk minute by minute, counting only minutes inside a working period of a working day (a day
    off is crossed in one jump to the next local midnight). The generated calendars' periods begin
    and end on whole quarter hours, and their zones change offset by whole hours on the hour, so a
    whole quarter hour starting on a boundary is all inside or all outside: it is walked in one step."""
    t = start.astimezone(UTC)
    left = minutes
    tz = ZoneInfo(cal.year(t.year).timezone)  # a generated calendar keeps one zone for all years
    while left > 0:
        local = t.astimezone(tz)
        year = cal.year(local.year)
        d = local.date()
        working_day = d in year.makeup_workdays or (d not in year.holidays and d.isoweekday() in year.working_weekdays)
        if not working_day:
            t = datetime.combine(d + timedelta(days=1), time(0), tz).astimezone(UTC)
            continue
        step = 15 if local.minute % 15 == 0 else 1
        if any(p.start <= local.time() < p.end for p in year.periods):
            step = min(step, left)
            left -= step
        t += timedelta(minutes=step)
    return t


@st.composite
def calendars(draw, around: date) -> WorkingCalendar:
    tz = draw(st.sampled_from(["Asia/Shanghai", "UTC", "Europe/Berlin"]))
    weekdays = tuple(sorted(draw(st.sets(st.integers(1, 7), min_size=3, max_size=7))))
    # 1-3 periods in whole quarter hours between 06:00 and 22:00, none overlapping; a lunch break
    # between two of them is the common case
    cuts = sorted(draw(st.sets(st.integers(24, 88), min_size=2, max_size=6)))
    cuts = cuts[: len(cuts) // 2 * 2]
    periods = tuple(WorkingPeriod(start=time(a // 4, a % 4 * 15), end=time(b // 4, b % 4 * 15))
                    for a, b in zip(cuts[::2], cuts[1::2], strict=True))
    days = [around + timedelta(days=n) for n in range(-3, 45)]
    holidays = draw(st.sets(st.sampled_from(days), max_size=8))
    makeup = draw(st.sets(st.sampled_from(days), max_size=4)) - holidays
    years = []
    for y in sorted({d.year for d in days}):
        years.append(CalendarYear(year=y, timezone=tz, working_weekdays=weekdays, periods=periods,
                                  holidays=tuple(sorted(d for d in holidays if d.year == y)),
                                  makeup_workdays=tuple(sorted(d for d in makeup if d.year == y))))
    return WorkingCalendar(years)


@st.composite
def cases(draw):
    start = draw(st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2027, 1, 31),
                              timezones=st.just(UTC))).replace(second=0, microsecond=0)
    cal = draw(calendars(start.date()))
    minutes = draw(st.integers(1, 40 * 60))
    return start, minutes, cal


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_business_due_time_equals_the_slow_reference(case):
    start, minutes, cal = case
    total = sum((datetime.combine(date.min, p.end) - datetime.combine(date.min, p.start)).seconds // 60
                for p in cal.year(start.year).periods)
    if total == 0:
        return
    assert due_at(start, minutes / 60, "business", cal) == reference_due(start, minutes, cal)


@settings(max_examples=100, deadline=None)
@given(cases(), st.integers(1, 20 * 60))
def test_limits_add_up_and_hours_between_inverts(case, more):
    start, minutes, cal = case
    first = due_at(start, minutes / 60, "business", cal)
    assert due_at(start, (minutes + more) / 60, "business", cal) == due_at(first, more / 60, "business", cal)
    assert working_hours_between(start, first, "business", cal) == pytest.approx(minutes / 60)


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)),
       st.floats(0.01, 500))
def test_calendar_hours_are_wall_clock_hours(start, hours):
    due = due_at(start, hours, "calendar", DEFAULT_CALENDAR)
    assert timedelta(0) <= due - (start + timedelta(hours=hours)) < timedelta(seconds=1)


# ----------------------------------------------------------------------------- known instants


def test_the_issue_example_wednesday_afternoon_24_business_hours():
    start = datetime(2026, 12, 2, 15, 8, tzinfo=SH)  # Wednesday
    assert due_at(start, 24, "business", DEFAULT_CALENDAR) == datetime(2026, 12, 7, 16, 38, tzinfo=SH)


def test_national_day_holiday_and_its_make_up_sunday():
    # Wednesday 30 September 17:00: 1 h that day, the holiday week off, Thursday 8 October 09:00-10:00
    assert due_at(datetime(2026, 9, 30, 17, 0, tzinfo=SH), 2, "business", DEFAULT_CALENDAR) == \
        datetime(2026, 10, 8, 10, 0, tzinfo=SH)
    # Friday 18 September 17:00: 1 h that day, then Sunday 20 September is a make-up working day
    assert due_at(datetime(2026, 9, 18, 17, 0, tzinfo=SH), 2, "business", DEFAULT_CALENDAR) == \
        datetime(2026, 9, 20, 10, 0, tzinfo=SH)


def test_official_2026_make_up_days_are_weekend_days_and_holidays_cover_the_notice():
    assert all(d.isoweekday() in (6, 7) for d in OFFICIAL_2026.makeup_workdays)
    assert len(OFFICIAL_2026.holidays) == 3 + 9 + 3 + 5 + 3 + 3 + 7
    assert calendar_defects(OFFICIAL_2026) == []


def test_an_undefined_year_works_on_the_nearest_years_week_without_holidays():
    y = DEFAULT_CALENDAR.year(2027)
    assert y.working_weekdays == OFFICIAL_2026.working_weekdays and y.holidays == () and y.year == 2027


# ----------------------------------------------------------------------------- validation


def test_every_defect_is_named_at_once():
    bad = CalendarYear(
        year=2027, timezone="Mars/Olympus",
        periods=(WorkingPeriod(start=time(9), end=time(12)), WorkingPeriod(start=time(11), end=time(14)),
                 WorkingPeriod(start=time(18), end=time(17))),
        holidays=(date(2027, 2, 8), date(2026, 12, 31)), makeup_workdays=(date(2027, 2, 8),))
    fields = {d["field"] for d in calendar_defects(bad)}
    assert {"timezone", "periods/1", "periods/2", "holidays/1", "makeup_workdays"} <= fields


def test_a_year_without_working_days_is_refused():
    assert [d["field"] for d in calendar_defects(CalendarYear(year=2027, working_weekdays=()))] == \
        ["working_weekdays"]


# ----------------------------------------------------------------------------- one way only


#: names under which a due time might be computed a second time
LIMIT_NAMES = ("response_hours", "resolution_hours", "report_back_hours", "period_hours", "limit_hours",
               "report_back", "default_report_back_hours")
FORBIDDEN_DEFS = ("due_at", "add_hours", "add_business_hours", "expected_resolution", "hours_between",
                  "working_hours_between", "business_hours")


def second_due_time_calculations(source: str, name: str) -> list[str]:
    """Places in ``source`` that compute a due time without ``civicgrid_contracts.calendar``: a
    function of one of the calculation's names, or a time limit turned into a timedelta."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in FORBIDDEN_DEFS:
            found.append(f"{name}:{node.lineno} defines {node.name}()")
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "timedelta":
            text = ast.unparse(node)
            if any(n in text for n in LIMIT_NAMES):
                found.append(f"{name}:{node.lineno} turns a time limit into {text}")
    return found


def test_no_service_computes_a_due_time_any_other_way():
    found = []
    for path in sorted((ROOT / "services").glob("*/src/**/*.py")):
        found += second_due_time_calculations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == [], "due times must come from civicgrid_contracts.calendar.due_at:\n" + "\n".join(found)


def test_the_guard_catches_a_second_calculation():
    assert second_due_time_calculations(
        "def f(ev):\n    return ev.received_at + timedelta(hours=ev.time_limits.resolution_hours)\n", "x.py")
    assert second_due_time_calculations("def add_business_hours(start, hours):\n    return start\n", "x.py")
    assert not second_due_time_calculations("t = now + timedelta(hours=2)\n", "x.py")
