"""Recurrence presets and wall-clock evaluation in the user's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from doable.domain import recurrence as rec
from doable.domain.errors import InvalidArgument

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("daily", "FREQ=DAILY"),
        ("Weekdays", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
        ("weekly", "FREQ=WEEKLY"),
        ("monthly", "FREQ=MONTHLY"),
        ("yearly", "FREQ=YEARLY"),
        ("every 3 days", "FREQ=DAILY;INTERVAL=3"),
        ("every 2 weeks", "FREQ=WEEKLY;INTERVAL=2"),
        ("every 1 day", "FREQ=DAILY"),
        ("RRULE:FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("byday=tu;freq=weekly", "FREQ=WEEKLY;BYDAY=TU"),
    ],
)
def test_presets_and_rrules_compile_to_canonical_rules(text: str, rule: str) -> None:
    assert rec.compile_rule(text) == rule


def test_count_and_until_are_added() -> None:
    assert rec.compile_rule("daily", count=5) == "FREQ=DAILY;COUNT=5"
    assert rec.compile_rule("weekly", until=date(2027, 1, 31)) == "FREQ=WEEKLY;UNTIL=20270131"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fortnightly-ish", "preset"),
        ("FREQ=HOURLY", "FREQ must be one of"),
        ("FREQ=DAILY;DTSTART=20260101", "does not support RRULE part 'DTSTART'"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "never produces a date"),
        ("FREQ=DAILY;COUNT=0", "between 1 and 1000"),
        ("FREQ=DAILY;COUNT=5;UNTIL=20270101", "not both"),
        ("FREQ=DAILY;INTERVAL=abc", "interval"),
        ("", "preset"),
    ],
)
def test_bad_rules_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        rec.compile_rule(text)


def test_nine_oclock_in_berlin_stays_nine_across_both_dst_changes() -> None:
    start = datetime(2026, 3, 27, 8, 0, tzinfo=UTC)  # Fri 09:00 CET
    nxt = rec.occurrences_after("FREQ=DAILY", start=start, after=start, tz=BERLIN, limit=3)
    assert [o.astimezone(BERLIN).hour for o in nxt] == [9, 9, 9]
    assert nxt[1] == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # CEST from the 29th
    autumn = datetime(2026, 10, 24, 7, 0, tzinfo=UTC)  # Sat 09:00 CEST
    after = rec.occurrences_after("FREQ=DAILY", start=autumn, after=autumn, tz=BERLIN, limit=2)
    assert [o.astimezone(BERLIN).hour for o in after] == [9, 9]
    assert after[1] == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)


def test_new_york_weekly_keeps_local_time_over_dst() -> None:
    start = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Mon 09:00 EST
    occurrences = rec.occurrences_after("FREQ=WEEKLY", start=start, after=start, tz=NEW_YORK, limit=2)
    assert [o.astimezone(NEW_YORK).strftime("%a %H:%M") for o in occurrences] == ["Mon 09:00", "Mon 09:00"]
    assert occurrences[1] == datetime(2026, 3, 16, 13, 0, tzinfo=UTC)


def test_weekdays_after_friday_is_monday() -> None:
    friday = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert rec.next_occurrence(
        rec.compile_rule("weekdays"), start=friday, after=friday, tz=ZoneInfo("UTC")
    ) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_count_ends_the_series() -> None:
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    rule = rec.compile_rule("daily", count=3)
    assert len(rec.occurrences_after(rule, start=start, after=start, tz=ZoneInfo("UTC"), limit=10)) == 2
    assert rec.next_occurrence(rule, start=start, after=datetime(2026, 1, 3, 9, tzinfo=UTC), tz=ZoneInfo("UTC")) is None


def test_until_includes_its_whole_day() -> None:
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    rule = rec.compile_rule("daily", until=date(2026, 1, 3))
    dates = rec.occurrences_after(rule, start=start, after=start, tz=ZoneInfo("UTC"), limit=10)
    assert [d.day for d in dates] == [2, 3]


def test_late_next_occurrence_skips_the_backlog() -> None:
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert rec.next_occurrence("FREQ=DAILY", start=start, after=now, tz=ZoneInfo("UTC")) == datetime(
        2026, 1, 11, 9, tzinfo=UTC
    )
