"""Recurrence rules: friendly presets and RFC 5545 RRULEs, evaluated on the user's wall clock.

Rules are stored as a canonical RRULE body without DTSTART (``FREQ=WEEKLY;BYDAY=MO``).
Occurrences are computed on naive local wall-clock times and only then turned into
instants, so a 09:00 task stays at 09:00 across daylight-saving changes.

One deliberate difference from RFC 5545: a monthly rule on the 29th-31st (an explicit
BYMONTHDAY, or a plain FREQ=MONTHLY starting on such a day; no BYDAY/BYSETPOS) is clamped to
the last day of shorter months and keeps its day for the others (Jan 31 -> Feb 28 -> Mar 31).
RFC 5545 skips those months, which silently drops a "pay rent on the 31st" task for five
months a year; nobody who writes "monthly on the 31st" means that.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from doable.domain.clock import localize
from doable.domain.errors import InvalidArgument

FIELD = "recurrence"

_PRESETS: dict[str, str] = {
    "daily": "FREQ=DAILY",
    "every day": "FREQ=DAILY",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "every weekday": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekly": "FREQ=WEEKLY",
    "every week": "FREQ=WEEKLY",
    "monthly": "FREQ=MONTHLY",
    "every month": "FREQ=MONTHLY",
    "yearly": "FREQ=YEARLY",
    "annually": "FREQ=YEARLY",
    "every year": "FREQ=YEARLY",
}
_EVERY_N = re.compile(r"^every\s+(\d{1,3})\s+(day|week|month|year)s?$")
_UNIT_FREQ = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}
_ALLOWED_PARTS = {
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYDAY",
    "BYMONTHDAY",
    "BYMONTH",
    "BYSETPOS",
    "BYYEARDAY",
    "BYWEEKNO",
    "WKST",
    "BYHOUR",
    "BYMINUTE",
}
_FREQS = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
PRESET_HELP = (
    "must be a preset (daily, weekdays, weekly, monthly, yearly, 'every N days|weeks|months|years') "
    "or an RRULE such as 'FREQ=WEEKLY;BYDAY=MO,WE'"
)
MAX_COUNT = 1000
MAX_PER_DAY = 24
_UNTIL = re.compile(r"^\d{8}(T\d{6}Z?)?$")
# Where "does this rule ever match?" is asked (see _probe_start): one 400-year Gregorian cycle
# before dateutil's year-9999 stop (9600-01-01 is a Saturday in the cycle's place of 2000-01-01).
_PROBE_YEAR = 9600
# A rule that yields nothing within this horizon "never matches" (e.g. Feb 30th).
_HORIZON_YEARS = 10


def compile_rule(text: str, *, count: int | None = None, until: date | None = None) -> str:
    """Turn a preset or RRULE into the canonical RRULE body, validated.

    Raises InvalidArgument naming ``recurrence`` with the accepted forms.
    """
    raw = text.strip()
    if not raw or len(raw) > 500 or "\x00" in raw:
        raise InvalidArgument(FIELD, PRESET_HELP)
    lowered = re.sub(r"\s+", " ", raw.lower())
    if lowered in _PRESETS:
        body = _PRESETS[lowered]
    elif m := _EVERY_N.match(lowered):
        n = int(m.group(1))
        if n < 1:
            raise InvalidArgument(FIELD, "interval must be at least 1")
        body = f"FREQ={_UNIT_FREQ[m.group(2)]}" + (f";INTERVAL={n}" if n > 1 else "")
    else:
        body = raw.upper().removeprefix("RRULE:")
    parts = _parse_parts(body)
    if count is not None:
        parts["COUNT"] = str(count)
    if until is not None:
        parts["UNTIL"] = until.strftime("%Y%m%d")
    canonical = ";".join(f"{k}={v}" for k, v in parts.items())
    _validate(canonical, parts)
    return canonical


def _parse_parts(body: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in body.split(";"):
        if not chunk:
            continue
        key, sep, value = chunk.partition("=")
        if not sep or not value:
            raise InvalidArgument(FIELD, PRESET_HELP)
        if key not in _ALLOWED_PARTS:
            raise InvalidArgument(
                FIELD, f"does not support RRULE part {key!r}; allowed: {', '.join(sorted(_ALLOWED_PARTS))}"
            )
        if key in parts:
            raise InvalidArgument(FIELD, f"repeats RRULE part {key}")
        parts[key] = value
    if parts.get("FREQ") not in _FREQS:
        raise InvalidArgument(FIELD, "FREQ must be one of DAILY, WEEKLY, MONTHLY, YEARLY")
    # FREQ first reads best and keeps the canonical form stable.
    return {"FREQ": parts.pop("FREQ"), **parts}


def _validate(canonical: str, parts: dict[str, str]) -> None:
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidArgument(FIELD, "may end by count or by until, not both")
    if "COUNT" in parts:
        if not parts["COUNT"].isdigit() or not 1 <= int(parts["COUNT"]) <= MAX_COUNT:
            raise InvalidArgument("recurrence.count", f"must be between 1 and {MAX_COUNT}")
    if "INTERVAL" in parts and (not parts["INTERVAL"].isdigit() or not 1 <= int(parts["INTERVAL"]) <= 999):
        raise InvalidArgument("recurrence.interval", "must be between 1 and 999")
    if "UNTIL" in parts and not _UNTIL.match(parts["UNTIL"]):
        # dateutil would read "0000001" as a date this month.
        raise InvalidArgument("recurrence.until", "must be a date like 20271231 (or 20271231T235959Z)")
    per_day = len(parts.get("BYHOUR", "0").split(",")) * len(parts.get("BYMINUTE", "0").split(","))
    if per_day > MAX_PER_DAY:
        # Every occurrence since the start is evaluated on each completion: keep series sparse.
        raise InvalidArgument(FIELD, f"may repeat at most {MAX_PER_DAY} times a day (BYHOUR x BYMINUTE)")
    try:
        rule = du.rrulestr(canonical, dtstart=datetime(2000, 1, 1, 9, 0))
    except (ValueError, TypeError, KeyError, IndexError):
        raise InvalidArgument(FIELD, PRESET_HELP) from None
    if not isinstance(rule, du.rrule):
        raise InvalidArgument(FIELD, PRESET_HELP)
    if _clamps(parts, None):
        return
    # A rule like BYMONTH=2;BYMONTHDAY=30 never matches; dateutil would search forever.
    probe = rule.replace(count=None, until=datetime(2000 + _HORIZON_YEARS * 3, 1, 1))
    if parts["FREQ"] in ("DAILY", "WEEKLY"):
        # Daily and weekly rules are probed late in the calendar: a miss costs dateutil a pass
        # over every remaining day up to the year 9999 (see _probe_start).
        far = datetime(_PROBE_YEAR, 1, 1, 9, 0)
        probe = rule.replace(dtstart=far, count=None, until=None)
        if probe.after(far, inc=True) is None:
            raise InvalidArgument(FIELD, "never produces a date (check BYMONTH/BYMONTHDAY/BYDAY)")
    elif probe.after(datetime(2000, 1, 1), inc=True) is None:
        raise InvalidArgument(FIELD, "never produces a date (check BYMONTH/BYMONTHDAY/BYDAY)")


def describe(rule: str) -> str:
    """A short human phrase for a canonical rule, for chat answers and the console."""
    for name in ("daily", "weekdays", "weekly", "monthly", "yearly"):
        if rule == _PRESETS[name]:
            return name
    return rule


_FREQ_OF = {"daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY", "yearly": "YEARLY"}
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")


def rule_from_parts(
    frequency: str,
    *,
    interval: int | None = None,
    by_day: list[str] | None = None,
    by_month_day: list[int] | None = None,
    by_set_pos: list[int] | None = None,
) -> str:
    """An RRULE body from the typed recurrence object's parts (validated by `compile_rule`)."""
    freq = _FREQ_OF.get(str(frequency).strip().lower())
    if freq is None:
        raise InvalidArgument("recurrence.frequency", "must be one of daily, weekly, monthly, yearly")
    parts = [f"FREQ={freq}"]
    if interval is not None:
        if not 1 <= interval <= 999:
            raise InvalidArgument("recurrence.interval", "must be between 1 and 999")
        if interval > 1:
            parts.append(f"INTERVAL={interval}")
    if by_day:
        days = [str(d).strip().upper() for d in by_day]
        if len(days) > 7 * 5 or not all(_BYDAY.match(d) for d in days):
            raise InvalidArgument(
                "recurrence.by_day", "must be days MO TU WE TH FR SA SU, optionally numbered like 1MO or -1FR"
            )
        parts.append("BYDAY=" + ",".join(days))
    if by_month_day:
        if len(by_month_day) > 31 or not all(1 <= abs(d) <= 31 for d in by_month_day):
            raise InvalidArgument("recurrence.by_month_day", "must be days 1 to 31, or -1 to -31 from the month's end")
        parts.append("BYMONTHDAY=" + ",".join(str(d) for d in by_month_day))
    if by_set_pos:
        if len(by_set_pos) > 31 or not all(1 <= abs(p) <= 366 for p in by_set_pos):
            raise InvalidArgument("recurrence.by_set_pos", "must be positions 1 to 366 or -1 to -366 (e.g. -1: last)")
        parts.append("BYSETPOS=" + ",".join(str(p) for p in by_set_pos))
    return ";".join(parts)


def _clamps(parts: dict[str, str], start_wall: datetime | None) -> bool:
    """Whether the rule is monthly on the 29th-31st and so evaluated with clamping."""
    if parts.get("FREQ") != "MONTHLY" or any(
        k in parts for k in ("BYSETPOS", "BYDAY", "BYYEARDAY", "BYWEEKNO", "BYHOUR", "BYMINUTE")
    ):
        return False
    if "BYMONTHDAY" in parts:
        try:
            return any(29 <= int(d) <= 31 for d in parts["BYMONTHDAY"].split(","))
        except ValueError:
            return False
    return start_wall is not None and start_wall.day >= 29


class _Evaluator(Protocol):
    def after(self, dt: datetime, inc: bool = False) -> datetime | None: ...


class _ClampedMonthly:
    """A monthly rule whose days past a month's end fall on its last day (see the module doc).

    Same contract as dateutil's rrule for what we use: `after(cursor)`, COUNT counted from the
    start, UNTIL as a wall-clock bound."""

    # 9000 (the latest year we accept) minus 1970, in months: a bound, never reached in practice.
    _MAX_MONTHS = 12 * 7100

    def __init__(self, parts: dict[str, str], start_wall: datetime, count: int | None, until: datetime | None) -> None:
        self._start = start_wall
        self._interval = int(parts.get("INTERVAL", "1"))
        raw_days = parts.get("BYMONTHDAY")
        self._days = [int(d) for d in raw_days.split(",")] if raw_days else [start_wall.day]
        raw_months = parts.get("BYMONTH")
        self._months = {int(m) for m in raw_months.split(",")} if raw_months else None
        self._count = count
        self._until = until

    def __iter__(self) -> Iterator[datetime]:
        first = self._start.year * 12 + self._start.month - 1
        produced = 0
        for step in range(0, self._MAX_MONTHS, self._interval):
            year, month0 = divmod(first + step, 12)
            if year > 9999:
                return
            if self._months is not None and month0 + 1 not in self._months:
                continue
            last = calendar.monthrange(year, month0 + 1)[1]
            # Past the end: the last day (clamped); negative days count from the end (as in RFC 5545).
            days = sorted({day for d in self._days if (day := min(d, last) if d > 0 else last + d + 1) >= 1})
            for day in days:
                wall = self._start.replace(year=year, month=month0 + 1, day=day)
                if wall < self._start:
                    continue
                if self._until is not None and wall > self._until:
                    return
                yield wall
                produced += 1
                if self._count is not None and produced >= self._count:
                    return

    def after(self, dt: datetime, inc: bool = False) -> datetime | None:
        for wall in self:
            if wall > dt or (inc and wall == dt):
                return wall
        return None


def _evaluator(rule: str, start_wall: datetime, prior: int = 0) -> _Evaluator | None:
    """The rule started at `start_wall`, with `prior` occurrences already used up from its COUNT
    (None when COUNT is used up). UNTIL includes its whole local day."""
    parsed = du.rrulestr(rule, dtstart=start_wall, ignoretz=True)
    assert isinstance(parsed, du.rrule)
    count = parsed._count
    if count is not None and prior:
        count -= prior
        if count <= 0:
            return None
    until = datetime.combine(parsed._until.date(), time.max) if parsed._until is not None else None
    parts = _parse_parts(rule)
    if _clamps(parts, start_wall):
        return _ClampedMonthly(parts, start_wall, count, until)
    return parsed.replace(count=count, until=until)


def _wall(instant: datetime, tz: ZoneInfo, all_day: bool) -> datetime:
    wall = instant.astimezone(tz).replace(tzinfo=None)
    return datetime.combine(wall.date(), time()) if all_day else wall


def occurrences_after(
    rule: str,
    *,
    start: datetime,
    after: datetime,
    tz: ZoneInfo,
    all_day: bool = False,
    limit: int = 1,
    prior: int = 0,
) -> list[datetime]:
    """The next `limit` occurrences strictly after `after`, as UTC instants.

    `start` is the series' first due instant (DTSTART); occurrences keep its local
    wall-clock time. UNTIL is inclusive of its whole local day. `prior` occurrences of the
    series happened before `start` and count toward COUNT.
    """
    evaluator = _evaluator(rule, _wall(start, tz, all_day), prior)
    if evaluator is None:
        return []
    after_wall = after.astimezone(tz).replace(tzinfo=None)
    found: list[datetime] = []
    cursor = after_wall
    while len(found) < limit:
        nxt = evaluator.after(cursor, inc=False)
        if nxt is None:
            break
        instant = localize(nxt, tz)
        cursor = nxt
        if instant <= after:
            # Wall-clock comparison and instant comparison can disagree around a
            # fall-back transition; the instant is what the user lives by.
            continue
        found.append(instant)
    return found


def check_start(rule: str, *, start: datetime, tz: ZoneInfo, all_day: bool = False) -> None:
    """InvalidArgument unless the rule, started at `start` (the due date), produces dates:
    "every 7 days on Saturdays" from a Tuesday never does, nor an UNTIL before the due date."""
    wall = _wall(start, tz, all_day)
    parts = _parse_parts(rule)
    until = parts.get("UNTIL")
    if until is not None and until[:8] < wall.strftime("%Y%m%d"):
        raise InvalidArgument(FIELD, "never produces a date on or after the due date: UNTIL is before it")
    endless = ";".join(f"{k}={v}" for k, v in parts.items() if k not in ("COUNT", "UNTIL"))
    probe = _evaluator(endless, _probe_start(wall, parts))
    if probe is not None and probe.after(_probe_start(wall, parts), inc=True) is None:
        raise InvalidArgument(
            FIELD, "never produces a date on or after the due date (check BYDAY, BYMONTHDAY and INTERVAL against it)"
        )


def _probe_start(wall: datetime, parts: dict[str, str]) -> datetime:
    """`wall` moved forward by whole periods of a daily or weekly rule to the year _PROBE_YEAR.

    dateutil looks for the next match up to the year 9999 and checks no bound before it finds
    one, so a rule that never matches costs it a pass over every day left: seconds of CPU from
    today. From _PROBE_YEAR it is about a tenth of a second, and the answer is the same: the
    calendar repeats every 400 years, and a whole number of periods keeps the rule's phase
    (which days an INTERVAL lands on). Monthly and yearly rules have few periods to pass."""
    freq = parts.get("FREQ")
    if freq not in ("DAILY", "WEEKLY") or wall.year >= _PROBE_YEAR:
        return wall
    step = int(parts.get("INTERVAL", "1")) * (7 if freq == "WEEKLY" else 1)
    days = (datetime(_PROBE_YEAR, 1, 1) - wall).days
    return wall + timedelta(days=-(-days // step) * step)


def next_occurrence(
    rule: str, *, start: datetime, after: datetime, tz: ZoneInfo, all_day: bool = False, prior: int = 0
) -> datetime | None:
    """The first occurrence strictly after `after`, or None when the series has ended."""
    nxt = occurrences_after(rule, start=start, after=after, tz=tz, all_day=all_day, limit=1, prior=prior)
    return nxt[0] if nxt else None


def count_of(rule: str) -> int | None:
    """The rule's COUNT, if it ends by count."""
    value = _parse_parts(rule).get("COUNT")
    return int(value) if value is not None else None


def count_through(rule: str, *, start: datetime, until: datetime, tz: ZoneInfo, all_day: bool = False) -> int:
    """How many occurrences the rule (from `start`) has up to and including `until` (at most MAX_COUNT)."""
    before_start = start - timedelta(microseconds=1)
    found = occurrences_after(rule, start=start, after=before_start, tz=tz, all_day=all_day, limit=MAX_COUNT)
    return sum(1 for o in found if o <= until)
