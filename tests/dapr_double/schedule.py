"""Job schedules and times, in the formats the Jobs API accepts.

Docs: https://docs.dapr.io/reference/api/jobs_api/ and
https://docs.dapr.io/developing-applications/building-blocks/jobs/jobs-features-concepts/ :
`schedule` is a 6-field cron expression (seconds first), optionally prefixed with
`CRON_TZ=<zone>`, or a period string (`@every <Go duration>`, `@hourly`, `@daily`,
`@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`); `dueTime` and `ttl` are
an RFC 3339 point in time, a Go duration from creation, or a non-repeating ISO 8601
duration. The docs say times without an offset use the scheduler's local time; the
double's "scheduler" runs in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from .goformats import parse_duration

_ISO_DURATION = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SEARCH_DAYS = 366 * 5


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...


def parse_time_or_offset(text: str, created: datetime) -> datetime:
    """An RFC 3339 time, or a Go / ISO 8601 duration counted from `created`."""
    value = text.strip()
    iso = _ISO_DURATION.match(value)
    if iso and value != "P":
        years, months, weeks, days, hours, minutes, seconds = (g or "0" for g in iso.groups())
        return created + relativedelta(
            years=int(years),
            months=int(months),
            weeks=int(weeks),
            days=int(days),
            hours=int(hours),
            minutes=int(minutes),
            seconds=float(seconds),
        )
    try:
        return created + parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither an RFC3339 time nor a duration") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class EverySchedule:
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval


def _field_values(text: str, low: int, high: int, names: Sequence[str] = ()) -> tuple[frozenset[int], bool]:
    """One cron field as the set of allowed values, plus whether it was unrestricted ('*' or '?')."""

    def number(token: str) -> int:
        lowered = token.lower()
        if lowered in names:
            return names.index(lowered) + (1 if names is _MONTHS else 0)
        if not token.isdigit():
            raise ValueError(f"bad cron value {token!r}")
        return int(token)

    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad cron step in {part!r}")
        if span in ("*", "?"):
            start, end = low, high
        elif "-" in span:
            first, last = span.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(span)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ValueError(f"cron value out of range in {part!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values), text in ("*", "?")


@dataclass(frozen=True)
class CronSchedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    any_day_of_month: bool
    any_day_of_week: bool
    zone: tzinfo

    @classmethod
    def parse(cls, expression: str, zone: tzinfo) -> CronSchedule:
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(f"expected 6 cron fields (seconds first), got {len(fields)}: {expression!r}")
        seconds, _ = _field_values(fields[0], 0, 59)
        minutes, _ = _field_values(fields[1], 0, 59)
        hours, _ = _field_values(fields[2], 0, 23)
        doms, any_dom = _field_values(fields[3], 1, 31)
        months, _ = _field_values(fields[4], 1, 12, _MONTHS)
        dows, any_dow = _field_values(fields[5], 0, 6, _DAYS)
        return cls(seconds, minutes, hours, doms, months, dows, any_dom, any_dow, zone)

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = (day.weekday() + 1) % 7 in self.days_of_week
        # Standard cron rule: when both day fields are restricted, either may match.
        if self.any_day_of_month or self.any_day_of_week:
            return dom and dow
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        start = (moment.astimezone(self.zone) + timedelta(seconds=1)).replace(microsecond=0)
        start_of_day = start.hour * 3600 + start.minute * 60 + start.second
        for offset in range(_SEARCH_DAYS):
            day = start.date() + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            floor = start_of_day if offset == 0 else 0
            for hour in sorted(self.hours):
                if (hour + 1) * 3600 <= floor:
                    continue
                for minute in sorted(self.minutes):
                    for second in sorted(self.seconds):
                        if hour * 3600 + minute * 60 + second >= floor:
                            local = datetime.combine(day, time(hour, minute, second), tzinfo=self.zone)
                            return local.astimezone(UTC)
        raise ValueError("the cron expression never fires")


def parse_schedule(text: str) -> Schedule:
    """Parse a `schedule` string; raise ValueError for anything the Jobs API would reject."""
    expression = text.strip()
    zone: tzinfo = UTC
    prefix = re.match(r"^(?:CRON_TZ|TZ)=(\S+)\s+", expression)
    if prefix:
        try:
            zone = ZoneInfo(prefix.group(1))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {prefix.group(1)!r}") from exc
        expression = expression[prefix.end() :]
    if expression.startswith("@every"):
        if prefix:
            raise ValueError("a CRON_TZ prefix cannot be combined with @every")
        interval = parse_duration(expression[len("@every") :].strip())
        if interval <= timedelta(0):
            raise ValueError("@every needs a positive duration")
        return EverySchedule(interval)
    if expression.startswith("@"):
        if expression not in _DESCRIPTORS:
            raise ValueError(f"unknown schedule descriptor {expression!r}")
        expression = _DESCRIPTORS[expression]
    return CronSchedule.parse(expression, zone)
