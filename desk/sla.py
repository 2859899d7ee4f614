"""Business time: the 3-business-day promise, measured in office hours.

Office hours, workdays, time zone, US federal holidays (with observed days, from the
``holidays`` package) and extra closure dates all come from settings. Instants are aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from desk.settings import SLASettings

__all__ = ["BusinessCalendar", "format_span"]


class BusinessCalendar:
    def __init__(self, settings: SLASettings) -> None:
        self.zone = ZoneInfo(settings.timezone)
        self.open_at = settings.open_at
        self.close_at = settings.close_at
        self.workdays = frozenset(settings.workdays)
        self.business_days = settings.business_days
        self.subdiv = settings.holiday_subdiv or None
        self.closures = frozenset(settings.closures)

    @property
    def day_length(self) -> timedelta:
        return _between(self.open_at, self.close_at)

    @property
    def allowance(self) -> timedelta:
        """Business time allowed for an initial response (3 days of office hours by default)."""
        return self.day_length * self.business_days

    def holiday_name(self, day: date) -> str | None:
        if day in self.closures:
            return "office closed"
        name = _holidays(self.subdiv, day.year).get(day)
        return str(name) if name else None

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.workdays and self.holiday_name(day) is None

    def is_open(self, instant: datetime) -> bool:
        local = instant.astimezone(self.zone)
        return (
            self.is_business_day(local.date())
            and self.open_at <= local.time().replace(tzinfo=None) < self.close_at
        )

    def next_open(self, instant: datetime) -> datetime:
        """The instant itself when the office is open, else the next opening (UTC)."""
        local = instant.astimezone(self.zone)
        day = local.date()
        if self.is_business_day(day):
            if local.time().replace(tzinfo=None) < self.open_at:
                return self._at(day, self.open_at)
            if local.time().replace(tzinfo=None) < self.close_at:
                return instant.astimezone(UTC)
        day = self.next_business_day(day)
        return self._at(day, self.open_at)

    def next_business_day(self, day: date) -> date:
        return self._step(day, 1)

    def previous_business_day(self, day: date) -> date:
        return self._step(day, -1)

    def _step(self, day: date, direction: int) -> date:
        for _ in range(400):
            day += timedelta(days=direction)
            if self.is_business_day(day):
                return day
        raise ValueError("no business day within a year: check SLA_WORKDAYS and closures")

    def last_close(self, instant: datetime) -> datetime:
        """The instant itself when the office is open, else the latest closing before it."""
        local = instant.astimezone(self.zone)
        day = local.date()
        if self.is_business_day(day):
            moment = local.time().replace(tzinfo=None)
            if moment > self.close_at:
                return self._at(day, self.close_at)
            if moment > self.open_at:
                return instant.astimezone(UTC)
        return self._at(self.previous_business_day(day), self.close_at)

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """``start`` plus ``amount`` of business time; the result is UTC."""
        current = self.next_open(start)
        remaining = amount
        while True:
            local = current.astimezone(self.zone)
            closing = self._at(local.date(), self.close_at)
            left_today = closing - current
            if remaining <= left_today:
                return current + remaining
            remaining -= left_today
            current = self._at(self.next_business_day(local.date()), self.open_at)

    def subtract(self, end: datetime, amount: timedelta) -> datetime:
        """The instant ``amount`` of business time before ``end`` (UTC); the inverse of
        :meth:`add` for an ``end`` inside office hours."""
        current = self.last_close(end)
        remaining = amount
        while True:
            local = current.astimezone(self.zone)
            opening = self._at(local.date(), self.open_at)
            done_today = current - opening
            if remaining <= done_today:
                return current - remaining
            remaining -= done_today
            current = self._at(self.previous_business_day(local.date()), self.close_at)

    def due(self, received: datetime) -> datetime:
        return self.add(received, self.allowance)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants (zero when end is before start)."""
        if end <= start:
            return timedelta(0)
        total = timedelta(0)
        current = self.next_open(start)
        while current < end:
            local = current.astimezone(self.zone)
            closing = self._at(local.date(), self.close_at)
            total += min(closing, end) - current
            current = self._at(self.next_business_day(local.date()), self.open_at)
        return total

    def remaining(self, now: datetime, due: datetime) -> timedelta:
        """Business time left until ``due``; negative (wall-clock) once it has passed."""
        if now >= due:
            return -(now - due)
        return self.elapsed(now, due)

    def describe_remaining(self, now: datetime, due: datetime) -> str:
        """Time left as the review card shows it: "1 business day 3 hours left", or once the
        deadline has passed, "late by 2 hours" (wall-clock time since the deadline)."""
        if now > due:
            return f"late by {format_span(now - due, timedelta(days=1), 'day')}"
        left = self.remaining(now, due)
        if left < timedelta(minutes=1):
            return "due now"
        return f"{format_span(left, self.day_length, 'business day')} left"

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)

    def describe(self, instant: datetime) -> str:
        """A due date as people read it, in the office time zone."""
        local = self.local(instant)
        hour = local.strftime("%I:%M %p").lstrip("0")
        return f"{local:%A, %B} {local.day}, {local.year} at {hour} {local.tzname()}"

    def describe_short(self, instant: datetime) -> str:
        """"Tue Dec 1, 2:00 PM EST": short enough for a subject line."""
        local = self.local(instant)
        hour = local.strftime("%I:%M %p").lstrip("0")
        return f"{local:%a %b} {local.day}, {hour} {local.tzname()}"

    def opening(self, day: date) -> datetime:
        """When the office opens on ``day`` (UTC), whether or not it is a business day."""
        return self._at(day, self.open_at)

    def closing(self, day: date) -> datetime:
        return self._at(day, self.close_at)

    def _at(self, day: date, moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=self.zone).astimezone(UTC)

    def holidays_in(self, years: Iterable[int]) -> dict[date, str]:
        found: dict[date, str] = {}
        for year in years:
            found.update({d: str(n) for d, n in _holidays(self.subdiv, year).items()})
        return found


def format_span(span: timedelta, day: timedelta, day_word: str) -> str:
    """``span`` in words: days (of length ``day``) and hours, or hours and minutes under a day,
    rounded down: "1 business day 3 hours", "2 hours 5 minutes", "40 minutes"."""
    minutes = int(span.total_seconds() // 60)
    day_minutes = max(1, int(day.total_seconds() // 60))
    days, minutes = divmod(minutes, day_minutes)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(_plural(days, day_word))
    if hours:
        parts.append(_plural(hours, "hour"))
    if minutes and not days:
        parts.append(_plural(minutes, "minute"))
    return " ".join(parts) or "less than a minute"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _between(start: time, end: time) -> timedelta:
    return datetime.combine(date.min, end) - datetime.combine(date.min, start)


@lru_cache(maxsize=64)
def _holidays(subdiv: str | None, year: int) -> holidays.HolidayBase:
    calendar: holidays.HolidayBase = holidays.country_holidays(
        "US", subdiv=subdiv, years=year, observed=True)
    return calendar
