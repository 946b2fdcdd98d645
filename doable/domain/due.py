"""Due dates and instants as users write them: ISO 8601, read in the user's timezone.

`2026-12-01` is all-day (the day in the user's timezone), `2026-12-01T09:00` is a wall-clock time
there, and an offset or `Z` gives an exact instant. Every error names the field it came from.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from doable.domain.clock import check_year, localize, start_of_day
from doable.domain.errors import InvalidArgument

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_date_only(value: str) -> bool:
    """`value` is a plain date (all-day), not a time or an instant."""
    return bool(_DATE_ONLY.match(value.strip()))


def parse_due(value: str, tz: ZoneInfo, field: str = "due") -> tuple[datetime, date | None]:
    """(due instant, local date if all-day). Naive times are in the user's timezone."""
    text = value.strip()
    if _DATE_ONLY.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(field, f"is not a real calendar date (got {value!r})") from None
        check_year(day, field)
        return start_of_day(day, tz), day
    return parse_instant(text, tz, field), None


def requested_wall(value: str | None) -> datetime | None:
    """The local wall-clock time a due value asks for (naive), before it becomes an instant: a
    time in a spring-forward gap happens shifted, but a series starting there keeps asking for
    it. 00:00 of the day for an all-day value; None for an exact instant (offset or Z)."""
    if value is None:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text) if not text.endswith(("z", "Z")) else None
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is not None:
        return None
    return parsed


def parse_instant(value: str, tz: ZoneInfo, field: str) -> datetime:
    """An instant (UTC); a time without an offset is a wall-clock time in `tz`."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            field,
            f"must be ISO 8601 like '2026-12-01', '2026-12-01T09:00' or '2026-12-01T09:00:00+01:00' (got {value!r})",
        ) from None
    check_year(parsed, field)
    if parsed.tzinfo is None:
        return localize(parsed, tz)
    return parsed.astimezone(UTC)
