"""The working calendar's pages: a year as twelve month grids, and the edit form turned into intake's
``PUT /api/v1/calendar/{year}`` body (holidays and make-up working days typed as date ranges).

The form is kept as the administrator typed it (strings), so a refused form comes back exactly as
it was, with each of intake's defects placed on the row that produced it: the body's
``holidays/7`` is the eighth date of the expanded ranges, which came from one row of the form.
"""

from __future__ import annotations

import calendar as stdlib_calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from civicgrid_console.domain import i18n
from civicgrid_console.domain.forms import FormInvalid

WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)  # ISO: 1 = Monday
#: rows the form offers beyond those in use (no script needed to add one; save and edit again for more)
SPARE_PERIODS, SPARE_RANGES = 1, 3
MIN_PERIOD_ROWS, MIN_HOLIDAY_ROWS, MIN_MAKEUP_ROWS = 3, 8, 4
#: intake's limits: at most 8 periods, 366 dates of each kind; a form never has more rows than this
MAX_PERIODS, MAX_RANGE_ROWS = 8, 60
#: the date lists of the body and the form fields their rows are called by
LISTS = {"holidays": "holiday", "makeup_workdays": "makeup"}


@dataclass
class CalendarForm:
    """The edit form's fields, as typed."""

    timezone: str = ""
    weekdays: list[int] = field(default_factory=list)
    periods: list[tuple[str, str]] = field(default_factory=list)  # (start, end) as HH:MM
    holiday: list[tuple[str, str]] = field(default_factory=list)  # (first, last) as YYYY-MM-DD; last optional
    makeup: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    revision: str = ""  # the year's revision the form was loaded at (sent back as If-Match; 0: not defined yet)

    def rows(self, kind: str) -> list[tuple[str, str]]:
        """The rows the page shows for ``kind`` (periods, holiday, makeup): those in use and spares."""
        used: list[tuple[str, str]] = getattr(self, kind)
        if kind == "periods":
            n = min(MAX_PERIODS, max(MIN_PERIOD_ROWS, len(used) + SPARE_PERIODS))
        else:
            least = MIN_HOLIDAY_ROWS if kind == "holiday" else MIN_MAKEUP_ROWS
            n = min(MAX_RANGE_ROWS, max(least, len(used) + SPARE_RANGES))
        return used + [("", "")] * (n - len(used))


# ----------------------------------------------------------------------------- API -> form


def date_ranges(days: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """Dates (ISO strings, any order) as runs of consecutive days: [(first, last)], last '' for one day."""
    ordered = sorted({date.fromisoformat(d) for d in days})
    runs: list[list[date]] = []
    for d in ordered:
        if runs and d - runs[-1][1] == timedelta(days=1):
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return [(a.isoformat(), b.isoformat() if b != a else "") for a, b in runs]


def hhmm(value: str) -> str:
    """'09:00:00' as '09:00' (the form's time fields have whole minutes)."""
    return value[:5]


def form_of(held: Mapping[str, Any]) -> CalendarForm:
    """The edit form filled with a year as intake returns it (its calendar and revision)."""
    cal = held["calendar"]
    return CalendarForm(timezone=cal.get("timezone") or "", weekdays=list(cal.get("working_weekdays") or []),
                        periods=[(hhmm(p["start"]), hhmm(p["end"])) for p in cal.get("periods") or []],
                        holiday=date_ranges(cal.get("holidays") or []),
                        makeup=date_ranges(cal.get("makeup_workdays") or []), source=cal.get("source") or "",
                        revision=str(held.get("revision", "")))


# ----------------------------------------------------------------------------- posted form -> form


def _rows(form, prefix: str, a: str, b: str, limit: int) -> list[tuple[str, str]]:
    """Rows ``<prefix>-<i>-<a>`` / ``-<b>`` in row order, blank ones dropped."""
    pattern = re.compile(rf"^{prefix}-(\d{{1,3}})-{a}$")
    indexes = sorted({int(m.group(1)) for k in form.keys() if (m := pattern.match(k))})[:limit]
    rows = [(str(form.get(f"{prefix}-{i}-{a}") or "").strip(), str(form.get(f"{prefix}-{i}-{b}") or "").strip())
            for i in indexes]
    return [r for r in rows if r[0] or r[1]]


def posted(form) -> CalendarForm:
    """The edit form as posted (nothing checked yet)."""
    weekdays = []
    for v in form.getlist("weekday"):
        if str(v).isdigit() and int(v) in WEEKDAYS:
            weekdays.append(int(v))
    return CalendarForm(timezone=str(form.get("timezone") or "").strip(), weekdays=sorted(set(weekdays)),
                        periods=_rows(form, "period", "start", "end", MAX_PERIODS),
                        holiday=_rows(form, "holiday", "first", "last", MAX_RANGE_ROWS),
                        makeup=_rows(form, "makeup", "first", "last", MAX_RANGE_ROWS),
                        source=str(form.get("source") or "").strip(), revision=str(form.get("revision") or "").strip())


# ----------------------------------------------------------------------------- form -> API body


@dataclass
class Body:
    """intake's body, and for each of its list items the form row it came from."""

    json: dict[str, Any]
    origin: dict[str, list[int]]  # body list ("periods", "holidays", ...) -> form row of each item

    def field_of(self, path: str) -> str | None:
        """The form field id an API error about body ``path`` belongs next to (None: on top)."""
        parts = path.split("/")
        head = parts[0]
        if head == "timezone":
            return "timezone"
        if head == "source":
            return "source"
        if head == "working_weekdays":
            return "weekdays"
        if head == "periods" or head in LISTS:
            row_prefix = "period" if head == "periods" else LISTS[head]
            if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(self.origin.get(head, [])):
                return f"{row_prefix}-{self.origin[head][int(parts[1])]}"
            return "periods" if head == "periods" else row_prefix
        return None


def _time(value: str) -> time:
    if not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
        raise ValueError(value)
    return time.fromisoformat(value if len(value) > 5 else value.zfill(5))


def body_of(cf: CalendarForm) -> Body:
    """intake's ``CalendarYearWrite`` from the form. The console checks only what it must to build
    the body (a time or a date it cannot read, a range that runs backwards); every rule of a
    calendar (dates within the year, periods in order, a day both off and worked...) is intake's,
    and its defects come back to be placed on their rows."""
    problems: list[tuple[str, str]] = []
    periods, period_rows = [], []
    for i, (start, end) in enumerate(cf.periods):
        try:
            periods.append({"start": _time(start).strftime("%H:%M"), "end": _time(end).strftime("%H:%M")})
            period_rows.append(i)
        except ValueError:
            problems.append((f"period-{i}", "cal.bad_time"))
    body: dict[str, Any] = {"timezone": cf.timezone, "working_weekdays": list(cf.weekdays), "periods": periods}
    origin: dict[str, list[int]] = {"periods": period_rows}
    for name, prefix in LISTS.items():
        days: dict[date, int] = {}  # each date once, from the first row naming it
        for i, (first, last) in enumerate(getattr(cf, prefix)):
            try:
                a = date.fromisoformat(first)
                b = date.fromisoformat(last) if last else a
            except ValueError:
                problems.append((f"{prefix}-{i}", "cal.bad_date"))
                continue
            if b < a:
                problems.append((f"{prefix}-{i}", "cal.backwards_range"))
                continue
            if (b - a).days > 366:
                problems.append((f"{prefix}-{i}", "cal.range_too_long"))
                continue
            for n in range((b - a).days + 1):
                days.setdefault(a + timedelta(days=n), i)
        ordered = sorted(days)
        body[name] = [d.isoformat() for d in ordered]
        origin[name] = [days[d] for d in ordered]
    body["source"] = cf.source or None
    if problems:
        raise FormInvalid(problems)
    return Body(json=body, origin=origin)


# ----------------------------------------------------------------------------- someone else saved first


def _ranges_shown(rows: list[tuple[str, str]]) -> str:
    return ", ".join(f"{a}–{b}" if b else a for a, b in rows)


def differences(current: CalendarForm, typed: CalendarForm) -> list[tuple[str, str]]:
    """(field id, the current version's value) for each field where the form as typed differs from
    the year's current version (after intake refused a save made on an older revision)."""
    shown = {"timezone": lambda f: f.timezone, "weekdays": lambda f: ", ".join(str(d) for d in f.weekdays),
             "periods": lambda f: ", ".join(f"{a}–{b}" for a, b in f.periods),
             "holiday": lambda f: _ranges_shown(f.holiday), "makeup": lambda f: _ranges_shown(f.makeup),
             "source": lambda f: f.source}
    return [(fid, show(current)) for fid, show in shown.items() if show(current) != show(typed)]


# ----------------------------------------------------------------------------- a year as month grids


@dataclass(frozen=True)
class Day:
    day: date
    kind: str  # "work", "rest", "holiday" (public holiday), "makeup" (调休: a rest day worked)


@dataclass(frozen=True)
class Month:
    number: int
    weeks: list[list[Day | None]]  # Monday first; None outside the month


def day_kind(d: date, weekdays: set[int], holidays: set[date], makeup: set[date]) -> str:
    """Make-up days are worked even when listed as holidays too (intake refuses that, but a grid
    should not hide it); otherwise a holiday is off, then the working week decides."""
    if d in makeup:
        return "makeup"
    if d in holidays:
        return "holiday"
    return "work" if d.isoweekday() in weekdays else "rest"


def months(cal: Mapping[str, Any]) -> list[Month]:
    year = int(cal["year"])
    weekdays = set(cal.get("working_weekdays") or ())
    holidays = {date.fromisoformat(d) for d in cal.get("holidays") or ()}
    makeup = {date.fromisoformat(d) for d in cal.get("makeup_workdays") or ()}
    grid = stdlib_calendar.Calendar(firstweekday=0)  # Monday
    out = []
    for m in range(1, 13):
        weeks = [[Day(d, day_kind(d, weekdays, holidays, makeup)) if d.month == m else None for d in week]
                 for week in grid.monthdatescalendar(year, m)]
        out.append(Month(m, weeks))
    return out


def counts(grid: list[Month]) -> dict[str, int]:
    """How many days of each kind the year has (working days include make-up days)."""
    out = {"work": 0, "rest": 0, "holiday": 0, "makeup": 0}
    for m in grid:
        for week in m.weeks:
            for d in week:
                if d:
                    out[d.kind] += 1
    out["working"] = out["work"] + out["makeup"]
    return out


def utc_offset(zone: str, year: int) -> str:
    """The zone's offset on the year's first noon, as UTC+08:00 ('' for a zone this machine lacks)."""
    try:
        offset = datetime(year, 1, 1, 12, tzinfo=ZoneInfo(zone)).strftime("%z")
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return f"UTC{offset[:3]}:{offset[3:]}"


# ----------------------------------------------------------------------------- the error summary's links


def field_names(lang: str, field_ids) -> tuple[dict[str, str], dict[str, str]]:
    """For the summary on top of a refused form: what to call each field with an error, and the
    element its link moves the focus to."""
    labels: dict[str, str] = {}
    targets: dict[str, str] = {}
    whole = {"timezone": ("cal.timezone", "timezone"), "source": ("cal.source", "source"),
             "weekdays": ("cal.week", "weekday-1"), "periods": ("cal.periods", "period-0-start"),
             "holiday": ("cal.holidays", "holiday-0-first"), "makeup": ("cal.makeup", "makeup-0-first")}
    rows = {"period": ("cal.period_start", "start"), "holiday": ("cal.holiday_first", "first"),
            "makeup": ("cal.makeup_first", "first")}
    for fid in field_ids:
        if fid in whole:
            key, target = whole[fid]
            labels[fid], targets[fid] = i18n.t(lang, key), target
            continue
        kind, _, n = fid.partition("-")
        if kind in rows and n.isdigit():
            key, part = rows[kind]
            labels[fid], targets[fid] = i18n.t(lang, key, n=int(n) + 1), f"{fid}-{part}"
    return labels, targets
