"""SLA business hours skip public holidays of the configured country and subdivision (the `holidays`
package) and local extra days."""

from __future__ import annotations

from datetime import UTC, date, datetime

from bot.tickets.sla import BusinessCalendar, Holidays


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def calendar(days_off: Holidays) -> BusinessCalendar:
    return BusinessCalendar.build("UTC", ["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00", days_off)


def test_public_holidays_of_a_subdivision_are_days_off() -> None:
    bavaria = Holidays(country="DE", subdivision="BY")
    berlin = Holidays(country="DE", subdivision="BE")
    epiphany = date(2026, 1, 6)  # a Tuesday: a holiday in Bavaria, not in Berlin
    assert epiphany in bavaria and epiphany not in berlin
    assert bavaria.name(epiphany)
    monday_1600 = utc(2026, 1, 5, 16)
    assert calendar(bavaria).add_minutes(monday_1600, 120) == utc(2026, 1, 7, 10)
    assert calendar(berlin).add_minutes(monday_1600, 120) == utc(2026, 1, 6, 10)


def test_any_year_is_known_and_local_days_add_to_them() -> None:
    days_off = Holidays([date(2031, 12, 24)], country="DE")
    assert date(2031, 12, 25) in days_off  # computed on demand, no yearly list to maintain
    assert date(2031, 12, 24) in days_off and days_off.name(date(2031, 12, 24)) == "local holiday"
    assert date(2031, 12, 23) not in days_off
    assert date(2031, 12, 24) not in Holidays(country="DE")


def test_no_country_means_only_the_local_days() -> None:
    days_off = Holidays([date(2026, 12, 24)])
    assert date(2026, 12, 24) in days_off and date(2026, 12, 25) not in days_off
