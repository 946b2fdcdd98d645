"""Validation of new input: a rule Doable can run (`compile_rule`, `validate_rule`) and a start it
produces dates from (`check_start`)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from doable.domain.clock import localize
from doable.domain.errors import InvalidArgument
from doable.domain.recurrence.expander import _Expander
from doable.domain.recurrence.rules import (
    _EVERY_N,
    _PRESETS,
    _UNIT_FREQ,
    FIELD,
    HORIZON_YEARS,
    PRESET_HELP,
    _check_setpos,
    _clamps,
    _parse_parts,
    _parse_rule,
)
from doable.domain.recurrence.series import series_start


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
