"""Recurrence rules users can trust: month-end clamping, the typed rule object, wall-clock DST rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from doable.domain import recurrence as rec
from doable.domain.clock import localize
from doable.domain.errors import InvalidArgument

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def days(rule: str, start: datetime, n: int, tz: ZoneInfo = UTC_ZONE) -> list[str]:
    found = rec.occurrences_after(rule, start=start, after=start, tz=tz, limit=n)
    return [o.astimezone(tz).strftime("%Y-%m-%d") for o in found]


def test_monthly_on_the_31st_clamps_to_the_last_day_and_keeps_the_31st() -> None:
    start = datetime(2027, 1, 31, 9, tzinfo=UTC)
    assert days("FREQ=MONTHLY", start, 4) == ["2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]


def test_monthly_on_the_31st_gets_29_february_in_a_leap_year() -> None:
    assert days("FREQ=MONTHLY", datetime(2028, 1, 31, 9, tzinfo=UTC), 2) == ["2028-02-29", "2028-03-31"]


def test_explicit_month_days_past_the_end_clamp_and_do_not_double() -> None:
    start = datetime(2027, 1, 15, 9, tzinfo=UTC)
    assert days("FREQ=MONTHLY;BYMONTHDAY=30,31", start, 5) == [
        "2027-01-30",
        "2027-01-31",
        "2027-02-28",  # the 30th and the 31st both fall on the 28th: once
        "2027-03-30",
        "2027-03-31",
    ]
    assert days("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=29", datetime(2026, 12, 29, 9, tzinfo=UTC), 2) == [
        "2027-02-28",
        "2027-04-29",
    ]


def test_clamped_rules_respect_count_until_and_last_day() -> None:
    start = datetime(2027, 1, 31, 9, tzinfo=UTC)
    assert days("FREQ=MONTHLY;COUNT=3", start, 10) == ["2027-02-28", "2027-03-31"]  # the start is the first
    assert days(rec.compile_rule("monthly", until=date(2027, 4, 30)), start, 10) == [
        "2027-02-28",
        "2027-03-31",
        "2027-04-30",
    ]
    assert days("FREQ=MONTHLY;BYMONTHDAY=-1", datetime(2027, 1, 31, 9, tzinfo=UTC), 2) == ["2027-02-28", "2027-03-31"]


def test_other_rules_keep_rfc_5545_semantics() -> None:
    # BYSETPOS (last weekday of the month) and yearly 29 February are not clamped.
    last_weekday = rec.compile_rule("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1")
    assert days(last_weekday, datetime(2027, 1, 29, 9, tzinfo=UTC), 2) == ["2027-02-26", "2027-03-31"]
    assert days("FREQ=YEARLY", datetime(2028, 2, 29, 9, tzinfo=UTC), 1) == ["2032-02-29"]


def test_a_monthly_rule_that_rfc_5545_finds_impossible_is_fine_when_clamped() -> None:
    assert rec.compile_rule("FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30") == "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30"
    with pytest.raises(InvalidArgument, match="never produces a date"):
        rec.compile_rule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30")


@pytest.mark.parametrize(
    ("parts", "rule"),
    [
        ({"frequency": "weekly", "by_day": ["mo", "we"]}, "FREQ=WEEKLY;BYDAY=MO,WE"),
        ({"frequency": "daily", "interval": 3}, "FREQ=DAILY;INTERVAL=3"),
        ({"frequency": "monthly", "by_month_day": [31]}, "FREQ=MONTHLY;BYMONTHDAY=31"),
        (
            {"frequency": "monthly", "by_day": ["MO", "TU", "WE", "TH", "FR"], "by_set_pos": [-1]},
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        ),
        ({"frequency": "monthly", "by_day": ["2TU"]}, "FREQ=MONTHLY;BYDAY=2TU"),
    ],
)
def test_the_typed_rule_object_builds_canonical_rrules(parts: dict[str, object], rule: str) -> None:
    frequency = str(parts.pop("frequency"))
    assert rec.compile_rule(rec.rule_from_parts(frequency, **parts)) == rule  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parts", "field", "allowed"),
    [
        ({"frequency": "hourly"}, "recurrence.frequency", "daily, weekly, monthly, yearly"),
        ({"frequency": "weekly", "by_day": ["monday"]}, "recurrence.by_day", "MO TU WE TH FR SA SU"),
        ({"frequency": "monthly", "by_month_day": [32]}, "recurrence.by_month_day", "1 to 31"),
        ({"frequency": "daily", "interval": 0}, "recurrence.interval", "between 1 and 999"),
    ],
)
def test_typed_rule_errors_name_the_field_and_the_allowed_values(
    parts: dict[str, object], field: str, allowed: str
) -> None:
    frequency = str(parts.pop("frequency"))
    with pytest.raises(InvalidArgument) as err:
        rec.rule_from_parts(frequency, **parts)  # type: ignore[arg-type]
    assert err.value.field == field and allowed in err.value.rule


def test_spring_forward_gap_resolves_forward_and_fall_back_takes_the_first() -> None:
    gap = localize(datetime(2026, 3, 29, 2, 30), BERLIN)
    assert gap.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    ambiguous = localize(datetime(2026, 10, 25, 2, 30), BERLIN)
    assert ambiguous == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first of the two


def test_a_daily_0230_series_lands_at_0330_on_the_spring_forward_day_and_back_after() -> None:
    start = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)  # Sat 02:30 CET
    found = rec.occurrences_after("FREQ=DAILY", start=start, after=start, tz=BERLIN, limit=2)
    assert [o.astimezone(BERLIN).strftime("%m-%d %H:%M") for o in found] == ["03-29 03:30", "03-30 02:30"]


def test_a_daily_0230_series_happens_once_on_the_fall_back_day() -> None:
    start = datetime(2026, 10, 24, 0, 30, tzinfo=UTC)  # Sat 02:30 CEST
    found = rec.occurrences_after("FREQ=DAILY", start=start, after=start, tz=BERLIN, limit=2)
    assert found == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_prior_occurrences_count_toward_count() -> None:
    start = datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert (
        len(rec.occurrences_after("FREQ=DAILY;COUNT=5", start=start, after=start, tz=UTC_ZONE, limit=9, prior=3)) == 1
    )
    assert rec.occurrences_after("FREQ=DAILY;COUNT=5", start=start, after=start, tz=UTC_ZONE, prior=5) == []
