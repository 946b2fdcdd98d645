"""Time as the domain sees it: an injectable clock and the user's local calendar."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from doable.domain.errors import InvalidArgument

# The calendar Doable accepts for dates and instants from users (due dates, filters, reminders).
# Far enough from datetime's own limits (years 1 and 9999) that a day or week added, a timezone
# offset applied or a microsecond sort key taken can never overflow.
YEAR_MIN, YEAR_MAX = 1970, 9000


def check_year(value: date, field: str) -> None:
    """InvalidArgument naming `field` unless `value` (a date or datetime) is within YEAR_MIN-YEAR_MAX."""
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        raise InvalidArgument(field, f"must be between the years {YEAR_MIN} and {YEAR_MAX}")


class Clock(Protocol):
    """Where "now" comes from; tests inject a manual one instead of sleeping."""

    def now(self) -> datetime:
        """Current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA zone `name`, or an InvalidArgument naming `field`."""
    if not name or len(name) > 64 or "\x00" in name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidArgument(field, "must be an IANA timezone name such as 'Europe/Berlin' or 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(
            field, f"must be an IANA timezone name such as 'Europe/Berlin' or 'UTC' (got {name!r})"
        ) from None


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """Attach `tz` to a naive wall-clock time and return the UTC instant.

    zoneinfo's fold=0 gives exactly the rules users expect: a time in a
    spring-forward gap resolves forward (02:30 -> 03:30) and an ambiguous
    fall-back time takes its first occurrence.
    """
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The instant a local calendar day begins (not always 00:00 where DST starts at midnight)."""
    return localize(datetime.combine(day, time()), tz)


@dataclass(frozen=True)
class LocalCalendar:
    """The user's "now", "today" and week boundaries, so nothing downstream guesses."""

    now: datetime
    tz: ZoneInfo

    @property
    def local_now(self) -> datetime:
        return self.now.astimezone(self.tz)

    @property
    def today(self) -> date:
        return self.local_now.date()

    @property
    def week_start(self) -> date:
        """Monday of the current ISO week."""
        return self.today - timedelta(days=self.today.weekday())

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        return start_of_day(day, self.tz), start_of_day(day + timedelta(days=1), self.tz)

    def week_bounds(self) -> tuple[datetime, datetime]:
        return start_of_day(self.week_start, self.tz), start_of_day(self.week_start + timedelta(days=7), self.tz)
