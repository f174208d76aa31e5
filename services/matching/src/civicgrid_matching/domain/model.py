"""Pure domain values of matching: availability slots, weeks, intervals, statistics. No I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

SLOT_MINUTES = 30
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY
WEEK_SECONDS = 7 * 24 * 3600
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

#: Rating of the resident -> points on the volunteer's record
RATING_POINTS = {"satisfied": 1.0, "basically_satisfied": 0.7, "unsatisfied": 0.0}


def parse_hhmm(s: str) -> int:
    """'08:30' -> minutes since midnight ('24:00' allowed as an end)."""
    m = _HHMM.match(s)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"expected HH:MM, got {s!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def windows_to_slots(windows: Iterable[dict]) -> np.ndarray:
    """Weekly windows ``{"day": "mon", "start": "08:00", "end": "12:00"}`` -> bool[336] half-hour slots."""
    slots = np.zeros(SLOTS_PER_WEEK, dtype=bool)
    for w in windows:
        d = DAYS.index(w["day"])
        a, b = parse_hhmm(w["start"]) // SLOT_MINUTES, math.ceil(parse_hhmm(w["end"]) / SLOT_MINUTES)
        slots[d * SLOTS_PER_DAY + a: d * SLOTS_PER_DAY + b] = True
    return slots


def needed_slot_range(start: datetime, hours: float, tz: ZoneInfo) -> np.ndarray:
    """Indices of the weekly slots the interval [start, start+hours) touches, in local time."""
    local = start.astimezone(tz)
    first = local.weekday() * SLOTS_PER_DAY + (local.hour * 60 + local.minute) // SLOT_MINUTES
    end_min = local.hour * 60 + local.minute + hours * 60
    last = local.weekday() * SLOTS_PER_DAY + math.ceil(end_min / SLOT_MINUTES)  # exclusive
    return np.arange(first, max(last, first + 1)) % SLOTS_PER_WEEK


def week_key(t: datetime, tz: ZoneInfo) -> str:
    y, w, _ = t.astimezone(tz).isocalendar()
    return f"{y}-W{w:02d}"


def as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def overlaps(a_start: datetime, a_hours: float, a_weekly: bool, b_start: datetime, b_hours: float,
             b_weekly: bool) -> bool:
    """Whether two bookings overlap; a weekly booking repeats every 7 days from its start on."""
    a0, b0 = as_utc(a_start).timestamp(), as_utc(b_start).timestamp()
    a1, b1 = a0 + a_hours * 3600, b0 + b_hours * 3600
    if not a_weekly and not b_weekly:
        return a0 < b1 and b0 < a1
    if a_weekly and b_weekly:
        # both repeat: compare the phases within the week (every later week meets again)
        pa, pb = a0 % WEEK_SECONDS, b0 % WEEK_SECONDS
        for shift in (-WEEK_SECONDS, 0, WEEK_SECONDS):
            if pa < pb + shift + b_hours * 3600 and pb + shift < pa + a_hours * 3600:
                return True
        return False
    if b_weekly:  # make ``a`` the weekly one
        a0, a1, b0, b1 = b0, b1, a0, a1
    if b1 <= a0:
        return False
    # the occurrence of the weekly booking nearest before b's start
    k = max(0, math.floor((b0 - a0) / WEEK_SECONDS))
    for kk in (k, k + 1):
        s = a0 + kk * WEEK_SECONDS
        if s < b1 and b0 < s + (a1 - a0):
            return True
    return False


def booked_hours_in_week(bookings: Iterable, week: str, tz: ZoneInfo) -> float:
    """Hours of bookings (anything with ``start``, ``hours``, ``weekly``) falling in ISO ``week``;
    a weekly booking counts in its first week and every week after."""
    total = 0.0
    for b in bookings:
        wk = week_key(as_utc(b.start), tz)
        if wk == week or (b.weekly and wk < week):
            total += float(b.hours)
    return total


def gini(values: Sequence[float]) -> float:
    """Gini coefficient (0 = perfectly equal, 1 = one person has everything)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)
