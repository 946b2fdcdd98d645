"""Recurrence rules: friendly presets and RFC 5545 RRULEs, evaluated on the user's wall clock.

Rules are stored as a canonical RRULE body without DTSTART (``FREQ=WEEKLY;BYDAY=MO``).
Occurrences are computed on naive local wall-clock times from the series' requested start (its
DTSTART as the user wrote it) and only then turned into instants, so a 09:00 task stays at 09:00
across daylight-saving changes. A wall time that does not exist that day (a spring-forward gap)
is shifted forward by the gap's length, for that day only; an ambiguous one (a fall-back fold)
takes its first occurrence. The series is the ordered set of those instants: never the same
instant twice. All-day series are computed on dates only.

RFC 5545 in full, with one deliberate difference: a monthly rule on the 29th-31st (an explicit
BYMONTHDAY, or a plain FREQ=MONTHLY starting on such a day; no BYDAY/BYSETPOS) is clamped to
the last day of shorter months and keeps its day for the others (Jan 31 -> Feb 28 -> Mar 31).
RFC 5545 skips those months, which silently drops a "pay rent on the 31st" task for five
months a year; nobody who writes "monthly on the 31st" means that.

- DTSTART (the due date) is always the first occurrence and counts toward COUNT, even when
  the rule would not produce it; a series makes exactly COUNT occurrences.
- UNTIL is a date (inclusive of that whole local day), a UTC date-time (``...T235959Z``,
  compared as an instant) or a local date-time.
- The work is bounded: dates are evaluated a year at a time against per-year-type masks, and
  a search gives up when the rule produces nothing within HORIZON_YEARS (validation refuses
  such a rule up front; a series whose next date would lie further away has ended).
"""

from __future__ import annotations

import calendar
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from doable.domain.clock import localize, start_of_day
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
MAX_INTERVAL = 999
MAX_PER_DAY = 24
# A rule must produce its next date within this many years (of the due date, of the last date).
HORIZON_YEARS = 100
_LAST_YEAR = 9999
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# RFC 5545 §3.3.10 value ranges: (lowest, highest, negatives allowed, how to say it).
_RANGES: dict[str, tuple[int, int, bool, str]] = {
    "BYMINUTE": (0, 59, False, "minutes 0 to 59"),
    "BYHOUR": (0, 23, False, "hours 0 to 23"),
    "BYMONTHDAY": (1, 31, True, "days 1 to 31 or -31 to -1"),
    "BYYEARDAY": (1, 366, True, "days 1 to 366 or -366 to -1"),
    "BYWEEKNO": (1, 53, True, "weeks 1 to 53 or -53 to -1"),
    "BYMONTH": (1, 12, False, "months 1 to 12"),
    "BYSETPOS": (1, 366, True, "positions 1 to 366 or -366 to -1"),
}
_INT = re.compile(r"^[+-]?\d{1,3}$")
_BYDAY_ITEM = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_UNTIL_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)$")


def compile_rule(text: str, *, count: int | None = None, until: date | None = None) -> str:
    """Turn a preset or RRULE into the canonical RRULE body, validated (see `validate_rule`).

    Raises InvalidArgument naming ``recurrence`` (or the part) with the accepted forms.
    """
    raw = text.strip() if isinstance(text, str) else ""
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
        body = re.sub(r"\s+", "", raw.upper()).removeprefix("RRULE:")
    parts = _parse_parts(body)
    if count is not None:
        parts["COUNT"] = str(count)
    if until is not None:
        parts["UNTIL"] = until.strftime("%Y%m%d")
    canonical = ";".join(f"{k}={v}" for k, v in parts.items())
    validate_rule(canonical)
    return canonical


def validate_rule(rule: str) -> None:
    """InvalidArgument unless `rule` (a canonical RRULE body) is a rule Doable can run: every part
    within RFC 5545's ranges, COUNT/INTERVAL within Doable's, and a combination of parts that can
    produce a date. A plain function of bounded work (a few milliseconds at worst)."""
    parsed = _parse_rule(rule, strict=True)
    _check_setpos(parsed)
    if not (parsed.weeknos or parsed.yeardays or parsed.monthdays or parsed.weekdays or parsed.nth):
        # The days come from the due date (DTSTART); check_start judges them.
        return
    probe = _Expander(parsed, datetime(2000, 1, 1, 9), all_day=False, clamp=_clamps(_parse_parts(rule), None))
    # Every kind of year (leap or not, its first weekday, its neighbours) occurs in 400 years.
    if not any(probe.year_days(year) for year in range(2000, 2400)):
        raise InvalidArgument(
            FIELD, f"never produces a date (check BYMONTH/BYMONTHDAY/BYDAY/BYYEARDAY/BYWEEKNO): {rule}"
        )


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
                FIELD, f"does not support RRULE part {key[:20]!r}; allowed: {', '.join(sorted(_ALLOWED_PARTS))}"
            )
        if key in parts:
            raise InvalidArgument(FIELD, f"repeats RRULE part {key}")
        parts[key] = value
    if parts.get("FREQ") not in _FREQS:
        raise InvalidArgument(FIELD, "FREQ must be one of DAILY, WEEKLY, MONTHLY, YEARLY")
    # FREQ first reads best and keeps the canonical form stable.
    return {"FREQ": parts.pop("FREQ"), **parts}


@dataclass(frozen=True)
class _Until:
    day: date | None = None  # a date: through the end of that local day
    wall: datetime | None = None  # a local date-time
    instant: datetime | None = None  # a UTC date-time


@dataclass(frozen=True)
class _Rule:
    text: str
    freq: str
    interval: int = 1
    count: int | None = None
    until: _Until | None = None
    months: frozenset[int] = frozenset()
    weeknos: frozenset[int] = frozenset()
    yeardays: frozenset[int] = frozenset()
    monthdays: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()  # BYDAY without a number
    nth: frozenset[tuple[int, int]] = frozenset()  # BYDAY with one: (n, weekday)
    setpos: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    minutes: tuple[int, ...] = ()
    wkst: int = 0


def _bad(part: str, value: str, rule: str, allowed: str) -> InvalidArgument:
    shown = value if len(value) <= 24 else value[:21] + "..."
    return InvalidArgument(FIELD, f"{part} must be {allowed} (RFC 5545 §3.3.10), got {shown!r} in {rule[:120]!r}")


def _numbers(part: str, value: str, rule: str) -> frozenset[int]:
    low, high, negative, allowed = _RANGES[part]
    items = value.split(",")
    out: set[int] = set()
    for item in items:
        if not _INT.match(item):
            raise _bad(part, value, rule, f"a comma-separated list of {allowed}")
        n = int(item)
        if not (low <= n <= high or (negative and -high <= n <= -low)):
            raise _bad(part, item, rule, f"a comma-separated list of {allowed}")
        out.add(n)
    return frozenset(out)


def _parse_until(value: str, rule: str) -> _Until:
    bad = InvalidArgument(
        "recurrence.until",
        f"UNTIL must be a date like 20271231, a UTC date-time like 20271231T235959Z or a local one like "
        f"20271231T235959 (RFC 5545), got {value[:24]!r} in {rule[:120]!r}",
    )
    try:
        if m := _UNTIL_DATE.match(value):
            found = _Until(day=date(int(m[1]), int(m[2]), int(m[3])))
            year = int(m[1])
        elif m := _UNTIL_TIME.match(value):
            wall = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]))
            found = _Until(instant=wall.replace(tzinfo=UTC)) if m[7] else _Until(wall=wall)
            year = wall.year
        else:
            raise bad
    except ValueError:
        raise bad from None
    if not 1970 <= year <= _LAST_YEAR:
        raise bad
    return found


@lru_cache(maxsize=512)
def _parse_rule(rule: str, strict: bool = False) -> _Rule:
    """The rule's parts, checked against RFC 5545's ranges. `strict` (new input) also refuses
    combinations RFC 5545 forbids; stored rules are read leniently, as they were accepted."""
    parts = _parse_parts(rule)
    freq = parts["FREQ"]
    kw: dict[str, object] = {}
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidArgument(FIELD, "may end by count or by until, not both")
    if "COUNT" in parts:
        if not _INT.match(parts["COUNT"].lstrip("+")) or not 1 <= int(parts["COUNT"]) <= MAX_COUNT:
            raise InvalidArgument("recurrence.count", f"must be between 1 and {MAX_COUNT} (COUNT in {rule[:120]!r})")
        kw["count"] = int(parts["COUNT"])
    if "INTERVAL" in parts:
        if not _INT.match(parts["INTERVAL"].lstrip("+")) or not 1 <= int(parts["INTERVAL"]) <= MAX_INTERVAL:
            raise InvalidArgument(
                "recurrence.interval", f"must be between 1 and {MAX_INTERVAL} (INTERVAL in {rule[:120]!r})"
            )
        kw["interval"] = int(parts["INTERVAL"])
    if "UNTIL" in parts:
        kw["until"] = _parse_until(parts["UNTIL"], rule)
    for part, name in (
        ("BYMONTH", "months"),
        ("BYWEEKNO", "weeknos"),
        ("BYYEARDAY", "yeardays"),
        ("BYMONTHDAY", "monthdays"),
    ):
        if part in parts:
            kw[name] = _numbers(part, parts[part], rule)
    for part, name in (("BYSETPOS", "setpos"), ("BYHOUR", "hours"), ("BYMINUTE", "minutes")):
        if part in parts:
            kw[name] = tuple(sorted(_numbers(part, parts[part], rule)))
    if "WKST" in parts:
        if parts["WKST"] not in _DAYS:
            raise _bad("WKST", parts["WKST"], rule, "one of MO TU WE TH FR SA SU")
        kw["wkst"] = _DAYS.index(parts["WKST"])
    if "BYDAY" in parts:
        plain: set[int] = set()
        nth: set[tuple[int, int]] = set()
        for item in parts["BYDAY"].split(","):
            m = _BYDAY_ITEM.match(item)
            if not m or (m[1] is not None and not 1 <= abs(int(m[1])) <= 53):
                raise _bad(
                    "BYDAY", item, rule, "weekdays MO TU WE TH FR SA SU, optionally numbered 1 to 53 or -53 to -1"
                )
            day = _DAYS.index(m[2])
            if m[1] is None:
                plain.add(day)
            elif freq in ("DAILY", "WEEKLY"):
                if strict:
                    raise _bad("BYDAY", item, rule, f"plain weekdays (no number) with FREQ={freq}")
                plain.add(day)  # as dateutil read it when it was accepted
            elif freq == "MONTHLY" and abs(int(m[1])) > 5:
                raise _bad("BYDAY", item, rule, "numbered 1 to 5 or -5 to -1 with FREQ=MONTHLY (a month has at most 5)")
            else:
                nth.add((int(m[1]), day))
        kw["weekdays"], kw["nth"] = frozenset(plain), frozenset(nth)
    if strict:
        if "BYWEEKNO" in parts and freq != "YEARLY":
            raise _bad("BYWEEKNO", parts["BYWEEKNO"], rule, "used with FREQ=YEARLY only")
        if kw.get("nth") and "BYWEEKNO" in parts:
            raise _bad("BYDAY", parts["BYDAY"], rule, "plain weekdays when BYWEEKNO is given")
        hours = len(kw.get("hours", ()) or (0,))  # type: ignore[arg-type]
        minutes = len(kw.get("minutes", ()) or (0,))  # type: ignore[arg-type]
        if hours * minutes > MAX_PER_DAY:
            # Every occurrence since the start may be evaluated on a completion: keep series sparse.
            raise InvalidArgument(FIELD, f"may repeat at most {MAX_PER_DAY} times a day (BYHOUR x BYMINUTE)")
    return _Rule(text=rule, freq=freq, **kw)  # type: ignore[arg-type]


def _check_setpos(r: _Rule) -> None:
    """BYSETPOS picks from each period's occurrences; refuse positions no period can have."""
    if not r.setpos:
        return
    days = {"DAILY": 1, "WEEKLY": 7, "MONTHLY": 31, "YEARLY": 366}[r.freq]
    if r.weekdays or r.nth:
        per = {"DAILY": 1, "WEEKLY": 1, "MONTHLY": 5, "YEARLY": 53}[r.freq]
        contexts = len(r.months) if r.freq == "YEARLY" and r.months else 1
        days = min(days, per * len(r.weekdays) + len(r.nth) * contexts)
    if r.monthdays and r.freq in ("MONTHLY", "YEARLY"):
        days = min(days, len(r.monthdays) * (len(r.months) or 12 if r.freq == "YEARLY" else 1))
    if r.yeardays and r.freq == "YEARLY":
        days = min(days, len(r.yeardays))
    if r.months and r.freq == "YEARLY":
        days = min(days, 31 * len(r.months))
    most = days * max(1, len(r.hours) or 1) * max(1, len(r.minutes) or 1)
    if all(abs(p) > most for p in r.setpos):
        raise _bad(
            "BYSETPOS",
            ",".join(map(str, r.setpos)),
            r.text,
            f"within 1 to {most} or -{most} to -1 here (FREQ={r.freq} with these parts has at most {most} per period)",
        )


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


# ---- evaluation ------------------------------------------------------------------------------


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
    expander = _expander(rule, first, all_day)
    until = parsed.until

    def walls() -> Iterator[datetime]:
        produced = expander.walls(begin)
        if begin <= first.date():
            head = next(produced, None)
            if head != first:
                yield first  # DTSTART counts even when the rule would not produce it
            if head is not None:
                yield head
        yield from produced

    def bounded() -> Iterator[datetime]:
        for w in walls():
            if until is not None and until.day is not None and w.date() > until.day:
                return
            if until is not None and until.wall is not None and w > until.wall:
                return
            if until is not None and until.instant is not None and all_day:
                if w.date() > until.instant.astimezone(tz).date():
                    return
            yield w

    if all_day:
        stream: Iterator[Occurrence] = (Occurrence(wall=w, at=_instant(w, tz, True)) for w in bounded())
    else:
        stream = _sorted_instants(bounded(), tz)
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


def check_start(
    rule: str, *, start: datetime, tz: ZoneInfo, all_day: bool = False, wall: datetime | None = None
) -> None:
    """InvalidArgument unless the rule, started at `start` (the due date), produces a date after it
    within HORIZON_YEARS: "every 7 days on Saturdays" from a Tuesday never does, nor a rule whose
    UNTIL is before the due date. Bounded work (see `_Expander`)."""
    parsed = _parse_rule(rule)
    first = series_start(start, tz, all_day, wall)
    until = parsed.until
    if until is not None and (
        (until.day is not None and until.day < first.date())
        or (until.wall is not None and until.wall < first)
        or (until.instant is not None and all_day and until.instant.astimezone(tz).date() < first.date())
        or (until.instant is not None and not all_day and until.instant < localize(first, tz))
    ):
        raise InvalidArgument(FIELD, "never produces a date on or after the due date: UNTIL is before it")
    endless = replace(parsed, count=None, until=None)
    expander = _Expander(endless, first, all_day=all_day, clamp=_clamps(_parse_parts(rule), first))
    if next((w for w in expander.walls(first.date()) if w > first), None) is None:
        raise InvalidArgument(
            FIELD,
            f"never produces a date on or after the due date within {HORIZON_YEARS} years "
            "(check BYDAY, BYMONTHDAY and INTERVAL against it)",
        )


def count_of(rule: str) -> int | None:
    """The rule's COUNT, if it ends by count."""
    return _parse_rule(rule).count


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


def without_count(rule: str) -> str:
    """The rule with its COUNT taken out (UNTIL kept)."""
    return ";".join(f"{k}={v}" for k, v in _parse_parts(rule).items() if k != "COUNT")
