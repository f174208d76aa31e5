from datetime import datetime
from zoneinfo import ZoneInfo

from civicgrid_audit.domain.calendar import WorkingCalendar

SH = ZoneInfo("Asia/Shanghai")


def cal(**kw):
    return WorkingCalendar.from_strings(**kw)


def test_within_a_working_day_skips_lunch():
    c = cal()
    start = datetime(2026, 11, 25, 11, 0, tzinfo=SH)  # Wednesday
    assert c.add_hours(start, 2) == datetime(2026, 11, 25, 14, 30, tzinfo=SH)


def test_over_a_weekend():
    c = cal()
    friday = datetime(2026, 11, 27, 17, 0, tzinfo=SH)
    assert c.add_hours(friday, 2) == datetime(2026, 11, 30, 10, 0, tzinfo=SH)  # Monday 10:00
    assert c.hours_between(friday, datetime(2026, 11, 30, 10, 0, tzinfo=SH)) == 2


def test_over_a_weekend_and_a_public_holiday():
    c = cal(holidays="2026-11-30")
    friday = datetime(2026, 11, 27, 17, 0, tzinfo=SH)
    assert c.add_hours(friday, 2) == datetime(2026, 12, 1, 10, 0, tzinfo=SH)  # Tuesday


def test_make_up_working_saturday_counts():
    c = cal(makeup_days="2026-11-28")
    friday = datetime(2026, 11, 27, 17, 0, tzinfo=SH)
    assert c.add_hours(friday, 2) == datetime(2026, 11, 28, 10, 0, tzinfo=SH)


def test_before_opening_and_calendar_hours():
    c = cal()
    early = datetime(2026, 11, 25, 6, 0, tzinfo=SH)
    assert c.add_hours(early, 3) == datetime(2026, 11, 25, 12, 0, tzinfo=SH)
    assert c.add_hours(early, 3, business=False) == datetime(2026, 11, 25, 9, 0, tzinfo=SH)


def test_result_keeps_the_callers_time_zone():
    from datetime import UTC

    c = cal()
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai, Friday
    end = c.add_hours(start, 2)
    assert end.tzinfo == UTC and end == datetime(2026, 11, 30, 10, 0, tzinfo=SH)
