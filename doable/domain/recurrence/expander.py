"""Evaluation of a parsed rule: its local wall-clock times, a year at a time."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, datetime, time
from functools import lru_cache

from doable.domain.recurrence.rules import _LAST_YEAR, HORIZON_YEARS, _clamps, _parse_parts, _parse_rule, _Rule


def _jan1(year: int) -> int:
    """The proleptic Gregorian ordinal of 1 January of `year` (also past date's range)."""
    y = year - 1
    return 365 * y + y // 4 - y // 100 + y // 400 + 1


def _weekday(ordinal: int) -> int:
    return (ordinal + 6) % 7  # date.fromordinal(1) is a Monday


def _month_starts(leap: bool) -> tuple[int, ...]:
    """Day-of-year (0-based) on which each month starts, and the year's length last."""
    starts = [0]
    for m in range(1, 13):
        starts.append(starts[-1] + calendar.monthrange(2001, m)[1] + (1 if leap and m == 2 else 0))
    return tuple(starts)


_STARTS = {False: _month_starts(False), True: _month_starts(True)}
_MONTH_OF = {
    leap: tuple(m for m in range(12) for _ in range(_STARTS[leap][m], _STARTS[leap][m + 1])) for leap in (False, True)
}


class _Expander:
    """The rule's local wall-clock times from `start` on, period by period, like RFC 5545 (and
    dateutil) define them: each period's days filtered by the BY parts, times from BYHOUR and
    BYMINUTE (else the start's), BYSETPOS within the period, nothing before the start.

    Which days of a year pass the BY parts depends only on the kind of year (its length, first
    weekday, and for BYWEEKNO its neighbours'), so each kind is worked out once."""

    def __init__(self, rule: _Rule, start: datetime, *, all_day: bool, clamp: bool = False) -> None:
        self.rule = rule
        self.start = start
        self.clamp = clamp
        months, monthdays, weekdays = set(rule.months), set(rule.monthdays), set(rule.weekdays)
        if not (rule.weeknos or rule.yeardays or rule.monthdays or rule.weekdays or rule.nth):
            if rule.freq == "YEARLY":
                months = months or {start.month}
                monthdays = {start.day}
            elif rule.freq == "MONTHLY":
                monthdays = {start.day}
            elif rule.freq == "WEEKLY":
                weekdays = {start.weekday()}
        self.months = frozenset(months)
        self.monthdays = frozenset(monthdays)
        self.weekdays = frozenset(weekdays)
        if all_day:
            self.times: tuple[time, ...] = (time(),)
        else:
            hours = rule.hours or (start.hour,)
            minutes = rule.minutes or (start.minute,)
            self.times = tuple(time(h, m, start.second, start.microsecond) for h in hours for m in minutes)
        self._kinds: dict[tuple[object, ...], tuple[int, ...]] = {}

    # -- which days of a year pass the BY parts --

    def year_days(self, year: int) -> tuple[int, ...]:
        """The days of `year` (0-based day of year, ascending) that pass every BY part."""
        leap = calendar.isleap(year)
        key: tuple[object, ...] = (leap, _weekday(_jan1(year)))
        if self.rule.weeknos:
            key += (calendar.isleap(year - 1), calendar.isleap(year + 1))
        found = self._kinds.get(key)
        if found is None:
            found = self._kinds[key] = self._days_of(year)
        return found

    def _days_of(self, year: int) -> tuple[int, ...]:
        r = self.rule
        leap = calendar.isleap(year)
        starts = _STARTS[leap]
        length = starts[12]
        wd0 = _weekday(_jan1(year))
        found: set[int] | None = None

        def keep(days: set[int]) -> None:
            nonlocal found
            found = days if found is None else found & days

        if self.months:
            keep({d for m in self.months for d in range(starts[m - 1], starts[m])})
        if r.weeknos:
            keep(self._weekno_days(year))
        if r.yeardays:
            keep({d - 1 if d > 0 else length + d for d in r.yeardays if abs(d) <= length})
        if self.monthdays:
            days: set[int] = set()
            for m in sorted(self.months) or range(1, 13):
                first, size = starts[m - 1], starts[m] - starts[m - 1]
                for d in self.monthdays:
                    if d > 0:
                        d = min(d, size) if self.clamp else d
                        if d <= size:
                            days.add(first + d - 1)
                    elif -d <= size:
                        days.add(first + size + d)
            keep(days)
        if self.weekdays or r.nth:
            days = {d for wd in self.weekdays for d in range((wd - wd0) % 7, length, 7)}
            if r.nth:
                if r.freq == "MONTHLY" or (r.freq == "YEARLY" and self.months):
                    chosen = range(1, 13) if r.freq == "MONTHLY" else sorted(self.months)
                    spans = [(starts[m - 1], starts[m] - 1) for m in chosen]
                else:
                    spans = [(0, length - 1)]
                for first, last in spans:
                    for n, wd in r.nth:
                        if n > 0:
                            i = first + (n - 1) * 7
                            i += (wd - (wd0 + i)) % 7
                        else:
                            i = last + (n + 1) * 7
                            i -= ((wd0 + i) - wd) % 7
                        if first <= i <= last:
                            days.add(i)
            keep(days)
        return tuple(sorted(found if found is not None else range(length)))

    def _week_one(self, year: int) -> int:
        """Ordinal of the first day of week 1 of `year` (the first week, from WKST, with 4+ days in it)."""
        jan1 = _jan1(year)
        before = (_weekday(jan1) - self.rule.wkst) % 7
        return jan1 - before + (7 if 7 - before < 4 else 0)

    def _weekno_days(self, year: int) -> set[int]:
        jan1 = _jan1(year)
        end = _jan1(year + 1)
        days: set[int] = set()
        for week_year in (year - 1, year, year + 1):
            one = self._week_one(week_year)
            weeks = (self._week_one(week_year + 1) - one) // 7
            for n in self.rule.weeknos:
                number = n if n > 0 else weeks + n + 1
                if 1 <= number <= weeks:
                    first = one + 7 * (number - 1)
                    days.update(o - jan1 for o in range(max(first, jan1), min(first + 7, end)))
        return days

    # -- the periods --

    def walls(self, begin: date) -> Iterator[datetime]:
        """The rule's wall-clock times from the start on, ascending, skipping whole years before
        `begin` (the year before it is still looked at, for a week across New Year). Ends when
        no time comes within HORIZON_YEARS, or after the year 9999."""
        r, start = self.rule, self.start
        origin = start.date()
        first_year = max(origin.year, begin.year - 1)
        last_hit = first_year
        pending: list[int] = []  # WEEKLY: a week that may go on into the next year
        pending_week = -1
        month0 = origin.year * 12 + origin.month - 1
        week0 = origin.toordinal() - (origin.weekday() - r.wkst) % 7
        for year in range(first_year, _LAST_YEAR + 1):
            if year > last_hit + HORIZON_YEARS:
                break
            days = self.year_days(year)
            if not days:
                continue
            jan1 = _jan1(year)
            groups: list[list[int]]
            if r.freq == "YEARLY":
                groups = [[jan1 + d for d in days]] if (year - origin.year) % r.interval == 0 else []
            elif r.freq == "DAILY":
                o0 = origin.toordinal()
                groups = [[jan1 + d] for d in days if (jan1 + d - o0) % r.interval == 0]
            elif r.freq == "MONTHLY":
                month_of = _MONTH_OF[calendar.isleap(year)]
                by_month: dict[int, list[int]] = {}
                for d in days:
                    index = year * 12 + month_of[d] - month0
                    if index % r.interval == 0:
                        by_month.setdefault(index, []).append(jan1 + d)
                groups = list(by_month.values())
            else:  # WEEKLY: a week can span New Year
                groups = []
                for d in days:
                    week = (jan1 + d - week0) // 7
                    if week % r.interval:
                        continue
                    if week != pending_week:
                        if pending:
                            groups.append(pending)
                        pending, pending_week = [], week
                    pending.append(jan1 + d)
                if pending and week0 + 7 * pending_week + 7 <= _jan1(year + 1):
                    groups.append(pending)
                    pending, pending_week = [], -1
            for group in groups:
                for wall in self._pick(group):
                    if wall >= start:
                        last_hit = year
                        yield wall
        if pending:
            yield from (w for w in self._pick(pending) if w >= start)

    def _pick(self, ordinals: list[int]) -> list[datetime]:
        times = self.times
        if not self.rule.setpos:
            return [datetime.combine(date.fromordinal(o), t) for o in ordinals for t in times]
        size = len(ordinals) * len(times)
        chosen = sorted({p - 1 if p > 0 else size + p for p in self.rule.setpos if -size <= p <= size})
        return [datetime.combine(date.fromordinal(ordinals[i // len(times)]), times[i % len(times)]) for i in chosen]


@lru_cache(maxsize=256)
def _expander(rule: str, start_wall: datetime, all_day: bool) -> _Expander:
    parsed = _parse_rule(rule)
    return _Expander(parsed, start_wall, all_day=all_day, clamp=_clamps(_parse_parts(rule), start_wall))
