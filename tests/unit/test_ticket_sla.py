from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.tickets.sla import BusinessCalendar, describe_minutes, elapsed_minutes, reading

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

BERLIN = BusinessCalendar.build("Europe/Berlin", ["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00",
                                [date(2026, 12, 25)])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_minutes_skip_nights_weekends_and_holidays() -> None:
    friday_1600 = utc(2026, 12, 18, 15)  # 16:00 in Berlin (UTC+1)
    monday_1000 = utc(2026, 12, 21, 9)
    assert BERLIN.minutes_between(friday_1600, monday_1000) == 120
    christmas_eve_1600 = utc(2026, 12, 24, 15)
    assert BERLIN.add_minutes(christmas_eve_1600, 120) == utc(2026, 12, 28, 9)  # 25th holiday, weekend


def test_timezone_and_daylight_saving() -> None:
    # Summer: Berlin is UTC+2, so business hours are 07:00-15:00 UTC.
    assert BERLIN.add_minutes(utc(2026, 7, 6, 6), 30) == utc(2026, 7, 6, 7, 30)
    assert not BERLIN.is_open(utc(2026, 7, 6, 15, 30))
    assert BERLIN.is_open(utc(2026, 1, 5, 15, 30))  # winter: 16:30 local


def test_round_the_clock_calendar() -> None:
    always = BERLIN.round_the_clock()
    assert always.minutes_between(utc(2026, 12, 25, 0), utc(2026, 12, 25, 4)) == 240


def test_pauses_are_not_counted() -> None:
    start = utc(2026, 11, 23, 8)  # Monday 09:00 Berlin
    now = start + timedelta(hours=4)
    assert elapsed_minutes(BERLIN, start, now, paused_minutes=60, paused_since=None) == 180
    assert elapsed_minutes(BERLIN, start, now, paused_minutes=0, paused_since=start + timedelta(hours=1)) == 60
    assert reading(BERLIN, start, now, 240, 0, start).due is None


def test_describe() -> None:
    assert describe_minutes(240, True) == "within 4 business hours"
    assert describe_minutes(60, True) == "within 1 business hour"
    assert describe_minutes(30, False) == "within 30 minutes"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1)),
       st.integers(min_value=1, max_value=5000))
def test_add_then_measure_round_trips(start: datetime, minutes: int) -> None:
    begin = start.replace(tzinfo=UTC)
    end = BERLIN.add_minutes(begin, minutes)
    assert abs(BERLIN.minutes_between(begin, end) - minutes) < 1e-6
