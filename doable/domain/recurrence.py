"""Recurrence rules: friendly presets and RFC 5545 RRULEs, evaluated on the user's wall clock.

Rules are stored as a canonical RRULE body without DTSTART (``FREQ=WEEKLY;BYDAY=MO``).
Occurrences are computed on naive local wall-clock times and only then turned into
instants, so a 09:00 task stays at 09:00 across daylight-saving changes.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
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
    try:
        rule = du.rrulestr(canonical, dtstart=datetime(2000, 1, 1, 9, 0))
    except (ValueError, TypeError, KeyError, IndexError):
        raise InvalidArgument(FIELD, PRESET_HELP) from None
    if not isinstance(rule, du.rrule):
        raise InvalidArgument(FIELD, PRESET_HELP)
    # A rule like BYMONTH=2;BYMONTHDAY=30 never matches; dateutil would search forever.
    probe = rule.replace(count=None, until=datetime(2000 + _HORIZON_YEARS * 3, 1, 1))
    if probe.after(datetime(2000, 1, 1), inc=True) is None:
        raise InvalidArgument(FIELD, "never produces a date (check BYMONTH/BYMONTHDAY/BYDAY)")


def describe(rule: str) -> str:
    """A short human phrase for a canonical rule, for chat answers and the console."""
    for name in ("daily", "weekdays", "weekly", "monthly", "yearly"):
        if rule == _PRESETS[name]:
            return name
    return rule


def _rule_for(rule: str, start_wall: datetime) -> du.rrule:
    parsed = du.rrulestr(rule, dtstart=start_wall, ignoretz=True)
    assert isinstance(parsed, du.rrule)
    return parsed


def occurrences_after(
    rule: str,
    *,
    start: datetime,
    after: datetime,
    tz: ZoneInfo,
    all_day: bool = False,
    limit: int = 1,
) -> list[datetime]:
    """The next `limit` occurrences strictly after `after`, as UTC instants.

    `start` is the series' first due instant (DTSTART); occurrences keep its local
    wall-clock time. UNTIL is inclusive of its whole local day.
    """
    start_wall = start.astimezone(tz).replace(tzinfo=None)
    if all_day:
        start_wall = datetime.combine(start_wall.date(), time())
    parsed = _rule_for(rule, start_wall)
    if parsed._until is not None:
        parsed = parsed.replace(until=datetime.combine(parsed._until.date(), time.max))
    after_wall = after.astimezone(tz).replace(tzinfo=None)
    found: list[datetime] = []
    cursor = after_wall
    while len(found) < limit:
        nxt = parsed.after(cursor, inc=False)
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


def next_occurrence(
    rule: str, *, start: datetime, after: datetime, tz: ZoneInfo, all_day: bool = False
) -> datetime | None:
    """The first occurrence strictly after `after`, or None when the series has ended."""
    nxt = occurrences_after(rule, start=start, after=after, tz=tz, all_day=all_day, limit=1)
    return nxt[0] if nxt else None
