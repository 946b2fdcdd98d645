"""Due dates, timezones and the user's calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from doable.domain.clock import LocalCalendar, localize, zone
from doable.domain.due import parse_due
from doable.domain.errors import InvalidArgument

BERLIN = ZoneInfo("Europe/Berlin")


def test_date_only_due_is_all_day_in_the_users_timezone() -> None:
    instant, day = parse_due("2026-12-01", BERLIN)
    assert day == date(2026, 12, 1)
    assert instant == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def test_naive_time_is_the_users_wall_clock_and_offsets_are_respected() -> None:
    assert parse_due("2026-07-01T09:00", BERLIN) == (datetime(2026, 7, 1, 7, 0, tzinfo=UTC), None)
    assert parse_due("2026-07-01T09:00:00Z", BERLIN)[0] == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert parse_due("2026-07-01T09:00:00-04:00", BERLIN)[0] == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2026-02-30", "tomorrow", "2026-13-01T09:00", "12/01/2026", "0001-01-01T00:00"])
def test_impossible_or_unparseable_due_dates_name_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_due(bad, BERLIN)
    assert err.value.field == "due"


def test_spring_forward_gap_resolves_forward_and_fall_back_takes_the_first() -> None:
    gap = localize(datetime(2026, 3, 29, 2, 30), BERLIN)
    assert gap.astimezone(BERLIN).strftime("%H:%M") == "03:30"
    ambiguous = localize(datetime(2026, 10, 25, 2, 30), BERLIN)
    assert ambiguous == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)


def test_timezone_names_are_validated() -> None:
    assert zone("America/New_York").key == "America/New_York"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "UTC\x00"):
        with pytest.raises(InvalidArgument, match="IANA"):
            zone(bad)


def test_today_and_week_follow_the_users_timezone() -> None:
    # 23:30 UTC on Sunday is already Monday in Berlin.
    cal = LocalCalendar(now=datetime(2026, 11, 29, 23, 30, tzinfo=UTC), tz=BERLIN)
    assert cal.today == date(2026, 11, 30)
    assert cal.week_start == date(2026, 11, 30)
    start, end = cal.day_bounds(cal.today)
    assert (start, end) == (datetime(2026, 11, 29, 23, 0, tzinfo=UTC), datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
