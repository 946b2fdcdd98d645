"""A series' occurrences: the rule's wall times from its start, as instants in the user's timezone,
bounded by COUNT and UNTIL."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from doable.domain.clock import localize, start_of_day
from doable.domain.recurrence.expander import _expander
from doable.domain.recurrence.rules import MAX_COUNT, _parse_rule, _Until


@dataclass(frozen=True)
class Occurrence:
    """One date of a series: the wall-clock time the rule gives, and the instant it happens."""

    wall: datetime  # naive local time as the rule gives it (00:00 of the date for all-day)
    at: datetime  # UTC; a nonexistent wall time shifted forward, an ambiguous one the first

    @property
    def day(self) -> date:
        return self.wall.date()


def series_start(start: datetime, tz: ZoneInfo, all_day: bool = False, wall: datetime | None = None) -> datetime:
    """The series' DTSTART on the wall clock: the requested local time `wall` when it still names
    `start` in `tz` (02:30 on a spring-forward day, stored as asked, though it happens at 03:30),
    else `start` read in `tz`. For an all-day series, its date (never re-read in another zone)."""
    if wall is not None:
        wall = wall.replace(tzinfo=None)
        if all_day:
            return datetime.combine(wall.date(), time())
        if localize(wall, tz) == start:
            return wall
    local = start.astimezone(tz).replace(tzinfo=None)
    return datetime.combine(local.date(), time()) if all_day else local


def _instant(wall: datetime, tz: ZoneInfo, all_day: bool) -> datetime:
    return start_of_day(wall.date(), tz) if all_day else localize(wall, tz)


def _sorted_instants(walls: Iterator[datetime], tz: ZoneInfo) -> Iterator[Occurrence]:
    """`walls` (ascending) as occurrences in instant order, each instant once.

    Mapping wall times to instants keeps their order except in a spring-forward gap: a gap time
    is shifted forward past wall times that follow it. So a gap time waits until a later,
    existing wall time shows that nothing earlier can still come."""
    waiting: list[tuple[datetime, datetime]] = []
    last: datetime | None = None
    for wall in walls:
        at = localize(wall, tz)
        heapq.heappush(waiting, (at, wall))
        if at.astimezone(tz).replace(tzinfo=None) != wall:
            continue  # in a gap
        # Every later wall time happens at or after `at`.
        while waiting and waiting[0][0] <= at:
            got, got_wall = heapq.heappop(waiting)
            if got != last:
                last = got
                yield Occurrence(wall=got_wall, at=got)
    while waiting:
        got, got_wall = heapq.heappop(waiting)
        if got != last:
            last = got
            yield Occurrence(wall=got_wall, at=got)


def _walls_with_start(rule: str, first: datetime, begin: date, all_day: bool) -> Iterator[datetime]:
    """The rule's wall times from `begin` on, with DTSTART `first` when the walk starts there."""
    produced = _expander(rule, first, all_day).walls(begin)
    if begin <= first.date():
        head = next(produced, None)
        if head != first:
            yield first  # DTSTART counts even when the rule would not produce it
        if head is not None:
            yield head
    yield from produced


def _until_walls(walls: Iterator[datetime], until: _Until | None, tz: ZoneInfo, all_day: bool) -> Iterator[datetime]:
    """`walls` up to UNTIL where it can be judged on the wall clock (a UTC UNTIL of a timed series
    is judged on the instants, by the caller)."""
    for w in walls:
        if until is not None and until.day is not None and w.date() > until.day:
            return
        if until is not None and until.wall is not None and w > until.wall:
            return
        if until is not None and until.instant is not None and all_day:
            if w.date() > until.instant.astimezone(tz).date():
                return
        yield w


def occurrences(
    rule: str,
    *,
    start: datetime,
    tz: ZoneInfo,
    all_day: bool = False,
    prior: int = 0,
    wall: datetime | None = None,
    after: datetime | date | None = None,
) -> Iterator[Occurrence]:
    """The series, in order: its start (DTSTART, always the first occurrence and counted by
    COUNT) and the rule's dates after it, each instant once, ending by COUNT (less `prior`
    occurrences already used up before `start`) or UNTIL. With `after`, only those strictly
    later: an instant, or for an all-day series a date (or the local date of an instant).

    Previews, completions, skips and missed-occurrence records all read this one sequence."""
    parsed = _parse_rule(rule)
    first = series_start(start, tz, all_day, wall)
    remaining = None if parsed.count is None else parsed.count - prior
    if remaining is not None and remaining <= 0:
        return
    after_day: date | None = None
    if all_day and after is not None:
        after_day = after if not isinstance(after, datetime) else after.astimezone(tz).date()
    after_at = after if isinstance(after, datetime) and not all_day else None
    # Without COUNT the series need not be walked from its start: jump to just before `after`
    # (two days of slack cover any wall-clock/instant disagreement).
    begin = first.date()
    if remaining is None:
        if after_day is not None:
            begin = max(begin, after_day - timedelta(days=2))
        elif after_at is not None:
            begin = max(begin, after_at.astimezone(tz).date() - timedelta(days=2))
    until = parsed.until
    walls = _until_walls(_walls_with_start(rule, first, begin, all_day), until, tz, all_day)
    if all_day:
        stream: Iterator[Occurrence] = (Occurrence(wall=w, at=_instant(w, tz, True)) for w in walls)
    else:
        stream = _sorted_instants(walls, tz)
    for occ in stream:
        if until is not None and until.instant is not None and not all_day and occ.at > until.instant:
            return
        if remaining is not None:
            if remaining <= 0:
                return
            remaining -= 1
        if after_day is not None and occ.day <= after_day:
            continue
        if after_at is not None and occ.at <= after_at:
            continue
        yield occ


def occurrences_after(
    rule: str,
    *,
    start: datetime,
    after: datetime | date,
    tz: ZoneInfo,
    all_day: bool = False,
    limit: int = 1,
    prior: int = 0,
    wall: datetime | None = None,
) -> list[datetime]:
    """The next `limit` occurrences strictly after `after`, as UTC instants (see `occurrences`).

    `start` is the series' first due instant (DTSTART) and `wall` its requested local time."""
    found: list[datetime] = []
    if limit <= 0:
        return found
    for occ in occurrences(rule, start=start, tz=tz, all_day=all_day, prior=prior, wall=wall, after=after):
        found.append(occ.at)
        if len(found) >= limit:
            break
    return found


def next_after(
    rule: str,
    *,
    start: datetime,
    after: datetime | date,
    tz: ZoneInfo,
    all_day: bool = False,
    prior: int = 0,
    wall: datetime | None = None,
) -> Occurrence | None:
    """The first occurrence strictly after `after` (with its wall time), or None when the series has ended."""
    return next(occurrences(rule, start=start, tz=tz, all_day=all_day, prior=prior, wall=wall, after=after), None)


def next_occurrence(
    rule: str,
    *,
    start: datetime,
    after: datetime | date,
    tz: ZoneInfo,
    all_day: bool = False,
    prior: int = 0,
    wall: datetime | None = None,
) -> datetime | None:
    """The first occurrence strictly after `after`, or None when the series has ended."""
    occ = next_after(rule, start=start, after=after, tz=tz, all_day=all_day, prior=prior, wall=wall)
    return occ.at if occ else None


def count_through(
    rule: str,
    *,
    start: datetime,
    until: datetime | date,
    tz: ZoneInfo,
    all_day: bool = False,
    wall: datetime | None = None,
) -> int:
    """How many occurrences the series (from `start`) has up to and including `until` (an instant,
    or for an all-day series a date), at most MAX_COUNT."""
    found = 0
    for occ in occurrences(rule, start=start, tz=tz, all_day=all_day, wall=wall):
        late = occ.day > until if not isinstance(until, datetime) else occ.at > until
        if late or found >= MAX_COUNT:
            break
        found += 1
    return found
