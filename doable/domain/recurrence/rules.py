"""Recurrence rules as text: presets and RRULE bodies parsed and checked against RFC 5545's ranges
(see the package docstring for the rules' meaning)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

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
        kw["weekdays"], kw["nth"] = _parse_byday(parts["BYDAY"], freq, rule, strict)
    if strict:
        _check_combination(parts, kw, rule)
    return _Rule(text=rule, freq=freq, **kw)  # type: ignore[arg-type]


def _parse_byday(value: str, freq: str, rule: str, strict: bool) -> tuple[frozenset[int], frozenset[tuple[int, int]]]:
    """BYDAY's plain weekdays and its numbered ones ((n, weekday): the nth in the month or year)."""
    plain: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in value.split(","):
        m = _BYDAY_ITEM.match(item)
        if not m or (m[1] is not None and not 1 <= abs(int(m[1])) <= 53):
            raise _bad("BYDAY", item, rule, "weekdays MO TU WE TH FR SA SU, optionally numbered 1 to 53 or -53 to -1")
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
    return frozenset(plain), frozenset(nth)


def _check_combination(parts: dict[str, str], kw: dict[str, object], rule: str) -> None:
    """The combinations RFC 5545 forbids, and Doable's bound on times a day (new input only)."""
    if "BYWEEKNO" in parts and parts["FREQ"] != "YEARLY":
        raise _bad("BYWEEKNO", parts["BYWEEKNO"], rule, "used with FREQ=YEARLY only")
    if kw.get("nth") and "BYWEEKNO" in parts:
        raise _bad("BYDAY", parts["BYDAY"], rule, "plain weekdays when BYWEEKNO is given")
    hours = len(kw.get("hours", ()) or (0,))  # type: ignore[arg-type]
    minutes = len(kw.get("minutes", ()) or (0,))  # type: ignore[arg-type]
    if hours * minutes > MAX_PER_DAY:
        # Every occurrence since the start may be evaluated on a completion: keep series sparse.
        raise InvalidArgument(FIELD, f"may repeat at most {MAX_PER_DAY} times a day (BYHOUR x BYMINUTE)")


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


def count_of(rule: str) -> int | None:
    """The rule's COUNT, if it ends by count."""
    return _parse_rule(rule).count


def without_count(rule: str) -> str:
    """The rule with its COUNT taken out (UNTIL kept)."""
    return ";".join(f"{k}={v}" for k, v in _parse_parts(rule).items() if k != "COUNT")
