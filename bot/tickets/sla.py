"""SLA clocks: business hours, holidays and pauses, in the configured time zone.

Targets are counted in minutes of a calendar: `business` (the configured days and hours, minus
holidays) or `always` (round the clock, for P1). Everything here is pure and takes explicit times,
so a fake clock tests it across evenings, weekends and holidays.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Holidays:
    """Days off: public holidays of a country (and subdivision) from the `holidays` package, which
    computes any year on demand, plus local extra days."""

    def __init__(self, extra: Iterable[date] = (), country: str = "", subdivision: str = "") -> None:
        self.extra = frozenset(extra)
        self.country, self.subdivision = country, subdivision
        self._public: Any = None
        if country:
            import holidays as holidays_package

            self._public = holidays_package.country_holidays(country, subdiv=subdivision or None)

    def __contains__(self, day: object) -> bool:
        if day in self.extra:
            return True
        return self._public is not None and isinstance(day, date) and day in self._public

    def name(self, day: date) -> str | None:
        if day in self.extra:
            return "local holiday"
        return self._public.get(day) if self._public is not None else None


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    timezone: ZoneInfo
    weekdays: frozenset[int]  # 0 = Monday
    start: time
    end: time
    holidays: Container[date]
    always: bool = False

    @classmethod
    def build(cls, timezone: str, days: Iterable[str], start: str, end: str, holidays: Iterable[date] | Holidays,
              *, always: bool = False) -> BusinessCalendar:
        days_off = holidays if isinstance(holidays, Holidays) else frozenset(holidays)
        return cls(ZoneInfo(timezone), frozenset(_DAYS.index(d) for d in days), _hhmm(start), _hhmm(end),
                   days_off, always)

    def round_the_clock(self) -> BusinessCalendar:
        return BusinessCalendar(self.timezone, self.weekdays, self.start, self.end, self.holidays, True)

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        """The business hours of a local day, as UTC instants, or None on a day off."""
        if day.weekday() not in self.weekdays or day in self.holidays or self.end <= self.start:
            return None
        opens = datetime.combine(day, self.start, self.timezone).astimezone(UTC)
        closes = datetime.combine(day, self.end, self.timezone).astimezone(UTC)
        return opens, closes

    def minutes_between(self, start: datetime, end: datetime) -> float:
        """Calendar minutes in [start, end) (0 when end <= start)."""
        if end <= start:
            return 0.0
        if self.always:
            return (end - start).total_seconds() / 60
        total = 0.0
        day = start.astimezone(self.timezone).date() - timedelta(days=1)
        last = end.astimezone(self.timezone).date()
        while day <= last:
            window = self._window(day)
            if window is not None:
                lo, hi = max(window[0], start), min(window[1], end)
                if hi > lo:
                    total += (hi - lo).total_seconds() / 60
            day += timedelta(days=1)
        return total

    def add_minutes(self, start: datetime, minutes: float) -> datetime:
        """The instant when `minutes` of calendar time have passed since `start`."""
        if self.always or minutes <= 0:
            return start + timedelta(minutes=max(minutes, 0))
        remaining = timedelta(minutes=minutes)
        day = start.astimezone(self.timezone).date()
        for _ in range(3660):  # ten years of days off is a configuration error, not a loop
            window = self._window(day)
            if window is not None:
                lo, hi = max(window[0], start), window[1]
                if hi > lo:
                    if hi - lo >= remaining:
                        return lo + remaining
                    remaining -= hi - lo
            day += timedelta(days=1)
        raise ValueError("the business calendar has no working hours")

    def is_open(self, at: datetime) -> bool:
        if self.always:
            return True
        window = self._window(at.astimezone(self.timezone).date())
        return window is not None and window[0] <= at < window[1]


@dataclass(frozen=True, slots=True)
class ClockReading:
    """Where a ticket stands against one target."""

    elapsed: float  # calendar minutes, pauses excluded
    target: int
    due: datetime | None  # None while the clock is paused

    @property
    def fraction(self) -> float:
        return self.elapsed / self.target if self.target else 0.0


def elapsed_minutes(calendar: BusinessCalendar, started: datetime, now: datetime, paused_minutes: float,
                    paused_since: datetime | None) -> float:
    """Calendar minutes a ticket has run: from `started` to `now`, minus closed pauses and any pause
    still going on."""
    running = calendar.minutes_between(started, now) - paused_minutes
    if paused_since is not None:
        running -= calendar.minutes_between(paused_since, now)
    return max(running, 0.0)


def reading(calendar: BusinessCalendar, started: datetime, now: datetime, target: int, paused_minutes: float,
            paused_since: datetime | None) -> ClockReading:
    elapsed = elapsed_minutes(calendar, started, now, paused_minutes, paused_since)
    due = None if paused_since is not None else calendar.add_minutes(now, max(target - elapsed, 0))
    return ClockReading(elapsed, target, due)


def describe_minutes(minutes: int, business: bool) -> str:
    """"within 4 business hours", "within 30 minutes"."""
    unit = "business " if business else ""
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"within {hours} {unit}hour{'s' if hours != 1 else ''}"
    return f"within {minutes} {unit}minutes" if business else f"within {minutes} minutes"
