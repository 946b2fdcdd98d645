"""The recurrence and time classes of issue 17, each at its root: a series starting in a DST gap,
COUNT with a due date the rule does not produce, UNTIL in UTC form, a series ending while overdue,
all-day tasks as dates across a timezone change, previews equal to what completion creates, RRULE
part ranges and bounded validation work."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from doable.bootstrap import Runtime
from doable.domain import recurrence as rec
from doable.domain.clock import LocalCalendar, ManualClock
from doable.domain.errors import InvalidArgument
from doable.domain.series import upcoming
from doable.usecases.inputs import ListRequest, NewTask, RecurrenceIn
from tests.agent_tools.conftest import complete_and_settle, pending, wall
from tests.workers.conftest import settle

NEW_YORK = "America/New_York"


async def _series(rt: Runtime, due: str, recurrence: RecurrenceIn | str, tz: str = "UTC") -> int:
    await rt.service.set_timezone("alice", tz)
    task = await rt.service.add("alice", NewTask(title="Repeat", due=due, recurrence=recurrence))
    await settle(rt)
    return task.task_id


async def test_a_series_starting_in_a_dst_gap_returns_to_the_requested_time(rt: Runtime, clock: ManualClock) -> None:
    clock.set(datetime(2026, 3, 7, 12, tzinfo=UTC))
    task_id = await _series(rt, "2026-03-08T02:30", "daily", NEW_YORK)  # 02:30 does not exist that day
    first = await rt.service.get("alice", task_id)
    assert wall(first, NEW_YORK) == "Sun 2026-03-08 03:30"
    assert [d.astimezone(ZoneInfo(NEW_YORK)).strftime("%d %H:%M") for d in upcoming(first, ZoneInfo(NEW_YORK), 3)] == [
        "08 03:30",
        "09 02:30",
        "10 02:30",
    ]
    nxt = await complete_and_settle(rt, task_id)
    assert wall(nxt, NEW_YORK) == "Mon 2026-03-09 02:30"


async def test_count_is_the_total_number_of_tasks_even_from_an_unmatched_due_date(
    rt: Runtime, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 11, 30, 8, tzinfo=UTC))
    # Weekly on Mondays, COUNT=2, due on a Tuesday: the Tuesday (DTSTART) and one Monday.
    task_id = await _series(rt, "2026-12-01T09:00", RecurrenceIn(rule="FREQ=WEEKLY;BYDAY=MO", count=2))
    made = [task_id]
    while (nxt := await complete_and_settle(rt, made[-1])) is not None:
        made.append(nxt.task_id)
        assert len(made) <= 5
    assert len(made) == 2


def test_until_in_utc_form_is_accepted_and_malformed_ones_name_the_rule() -> None:
    rule = rec.compile_rule("FREQ=DAILY;UNTIL=20270103T235959Z")
    start = datetime(2027, 1, 1, 9, tzinfo=UTC)
    tz = ZoneInfo("Europe/Berlin")
    rec.check_start(rule, start=start, tz=tz)
    found = rec.occurrences_after(rule, start=start, after=start, tz=tz, limit=10)
    assert [o.date().isoformat() for o in found] == ["2027-01-02", "2027-01-03"]
    with pytest.raises(InvalidArgument, match=r"recurrence\.until: UNTIL must be .*'FREQ=DAILY;UNTIL=2027-01-03'"):
        rec.compile_rule("FREQ=DAILY;UNTIL=2027-01-03")


async def test_a_series_that_ends_while_overdue_records_its_missed_occurrences(rt: Runtime, clock: ManualClock) -> None:
    clock.set(datetime(2026, 11, 1, 8, tzinfo=UTC))
    task_id = await _series(rt, "2026-11-02T09:00", RecurrenceIn(rule="daily", count=4))
    clock.set(datetime(2026, 11, 10, 8, tzinfo=UTC))  # all four dates passed
    assert await complete_and_settle(rt, task_id) is None
    records = await rt.service.series.occurrences("alice", task_id)
    assert records is not None
    assert sorted((r.due_at.strftime("%m-%d"), r.status.value) for r in records) == [
        ("11-02", "completed"),
        ("11-03", "missed"),
        ("11-04", "missed"),
        ("11-05", "missed"),
    ]


async def test_all_day_tasks_stay_dates_across_a_timezone_change(rt: Runtime, clock: ManualClock) -> None:
    clock.set(datetime(2026, 11, 26, 3, tzinfo=UTC))  # Thu 26 Nov in Tokyo and in UTC
    task_id = await _series(rt, "2026-11-26", "daily", "Asia/Tokyo")
    await rt.service.set_timezone("alice", "UTC")
    for window in ("today", "this_week"):
        page, _ = await rt.service.list("alice", ListRequest(due=window))  # type: ignore[arg-type]
        assert [t.task_id for t in page.tasks] == [task_id], window
    page, _ = await rt.service.list("alice", ListRequest(filter="today"))
    assert [t.task_id for t in page.tasks] == [task_id]
    page, _ = await rt.service.list("alice", ListRequest(due="overdue"))
    assert page.tasks == []
    nxt = await complete_and_settle(rt, task_id)
    assert nxt is not None and nxt.due_date == date(2026, 11, 27)
    assert [t.due_date for t in await pending(rt)] == [date(2026, 11, 27)]


def test_a_preview_never_lists_an_instant_twice_and_equals_the_series() -> None:
    tz = ZoneInfo("Europe/Berlin")
    # 02:xx does not exist on 29 March 2026: 02:30 happens at 03:30, as 03:30 does.
    rule = rec.compile_rule("FREQ=DAILY;BYHOUR=2,3;BYMINUTE=30")
    start = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    preview = rec.occurrences_after(rule, start=start, after=start, tz=tz, limit=6)
    assert len(set(preview)) == len(preview) and preview == sorted(preview)
    stepped, cursor = [], start
    for _ in range(6):
        nxt = rec.next_occurrence(rule, start=start, after=cursor, tz=tz)
        assert nxt is not None
        stepped.append(nxt)
        cursor = nxt
    assert stepped == preview


@pytest.mark.parametrize(
    ("rule", "part", "allowed"),
    [
        ("FREQ=DAILY;BYHOUR=99999999999999999999", "BYHOUR", "0 to 23"),
        ("FREQ=MONTHLY;BYDAY=99MO", "BYDAY", "1 to 53"),
        ("FREQ=MONTHLY;BYDAY=6MO", "BYDAY", "1 to 5"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY", "1 to 31"),
        ("FREQ=YEARLY;BYYEARDAY=400", "BYYEARDAY", "1 to 366"),
        ("FREQ=YEARLY;BYWEEKNO=54", "BYWEEKNO", "1 to 53"),
        ("FREQ=YEARLY;BYMONTH=13", "BYMONTH", "1 to 12"),
        ("FREQ=MINUTELY", "FREQ", "DAILY"),
        ("FREQ=DAILY;BYMINUTE=60", "BYMINUTE", "0 to 59"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=400", "BYSETPOS", "1 to 366"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", "BYSETPOS", "1 to 5"),
        ("FREQ=DAILY;INTERVAL=100000000000000000000", "INTERVAL", "between 1 and 999"),
        ("FREQ=DAILY;COUNT=99999999999", "COUNT", "between 1 and 1000"),
        ("FREQ=WEEKLY;WKST=XX", "WKST", "MO TU"),
    ],
)
def test_rrule_parts_out_of_range_name_the_part_and_its_range(rule: str, part: str, allowed: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        rec.compile_rule(rule)
    assert part in str(err.value) and allowed in str(err.value)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=YEARLY;BYMONTHDAY=31;BYMONTH=2",
        "FREQ=YEARLY;BYYEARDAY=366;BYMONTH=1",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=WEEKLY;BYMONTH=4;BYMONTHDAY=31",
        "FREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=1,2,3;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO;BYMONTH=1",
    ],
)
def test_a_rule_that_never_matches_is_refused_with_bounded_work(rule: str) -> None:
    """The work is structural (one pass over the kinds of year), not a search to the year 9999;
    counted in calls, not seconds: each kind of year is worked out at most once."""
    calls = 0
    real = rec._Expander._days_of

    def counting(self: rec._Expander, year: int) -> tuple[int, ...]:
        nonlocal calls
        calls += 1
        return real(self, year)

    rec._Expander._days_of = counting  # type: ignore[method-assign]
    try:
        with pytest.raises(InvalidArgument, match="never produces a date"):
            rec.compile_rule(rule)
    finally:
        rec._Expander._days_of = real  # type: ignore[method-assign]
    assert calls <= 7 * 8


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;INTERVAL=7;BYDAY=SA",
        "FREQ=YEARLY;INTERVAL=4;BYYEARDAY=366",
        "FREQ=DAILY;INTERVAL=997;BYMONTH=2;BYMONTHDAY=29",
    ],
)
def test_a_rule_that_never_matches_its_due_date_is_refused_within_a_horizon(rule: str) -> None:
    start = datetime(2001, 1, 2, 9, tzinfo=UTC)  # a Tuesday in a year after a leap year
    with pytest.raises(
        InvalidArgument, match=f"never produces a date on or after the due date within {rec.HORIZON_YEARS} years"
    ):
        rec.check_start(rec.compile_rule(rule), start=start, tz=ZoneInfo("UTC"))


def test_validation_is_a_plain_function_and_fast() -> None:
    """A generous bound for a loaded machine; the real cost is a few milliseconds at worst."""
    began = time.perf_counter()
    for rule in ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO;BYMONTH=1"):
        with pytest.raises(InvalidArgument):
            rec.validate_rule(rule)
    assert time.perf_counter() - began < 0.5


def test_all_day_filters_compare_dates_in_the_users_calendar() -> None:
    from doable.domain.query import TaskFilter, day_bounds

    cal = LocalCalendar(now=datetime(2026, 11, 26, 3, tzinfo=UTC), tz=ZoneInfo("UTC"))
    lo, hi = cal.day_bounds(cal.today)
    assert day_bounds(lo, hi, cal.tz) == {"day_from": date(2026, 11, 26), "day_to": date(2026, 11, 27)}
    assert TaskFilter(due_from=lo, due_to=hi, **day_bounds(lo, hi, cal.tz)).day_from == date(2026, 11, 26)
