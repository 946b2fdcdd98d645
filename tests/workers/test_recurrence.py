"""Recurring tasks: completing an occurrence creates the next one, once, by the series' rule in
the user's timezone, from the previous due date."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from doable.domain.events import EventType
from doable.domain.task import Priority, Reminder, Task
from doable.platform import topology
from doable.usecases.inputs import NewTask, RecurrenceIn, ReminderIn
from tests.workers.conftest import settle, tasks_of

UTC_ZONE = "UTC"


async def start_series(
    rt: Runtime,
    clock: ManualClock,
    *,
    due: str,
    rule: str,
    now: datetime,
    tz: str = UTC_ZONE,
    count: int | None = None,
    until: date | None = None,
    **fields: object,
) -> Task:
    clock.set(now)
    await rt.service.set_timezone("alice", tz)
    new = NewTask(title="Repeat", due=due, recurrence=RecurrenceIn(rule=rule, count=count, until=until), **fields)  # type: ignore[arg-type]
    task = await rt.service.add("alice", new)
    await settle(rt)
    return task


async def complete(rt: Runtime, task_id: int) -> Task | None:
    """Complete `task_id`; the occurrence that followed, if any (never more than one)."""
    before = {t.task_id for t in await tasks_of(rt, "alice")}
    await rt.service.complete("alice", task_id)
    await settle(rt)
    created = [t for t in await tasks_of(rt, "alice") if t.task_id not in before]
    assert len(created) <= 1, created
    return created[0] if created else None


def wall(task: Task | None, tz: str = UTC_ZONE) -> str:
    assert task is not None and task.due_at is not None
    return task.due_at.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M")


THURSDAY_NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def test_daily_task_continues_the_next_day_at_the_same_time(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-26T18:00", rule="daily", now=THURSDAY_NOON)
    nxt = await complete(rt, task.task_id)
    assert wall(nxt) == "Fri 2026-11-27 18:00"


async def test_completing_friday_weekday_task_schedules_monday(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="weekdays", now=THURSDAY_NOON)
    assert wall(await complete(rt, task.task_id)) == "Mon 2026-11-30 09:00"


async def test_weekly_on_two_days_alternates_between_them(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-30T09:00", rule="FREQ=WEEKLY;BYDAY=MO,TH", now=THURSDAY_NOON)
    thursday = await complete(rt, task.task_id)
    assert wall(thursday) == "Thu 2026-12-03 09:00"
    assert thursday is not None
    assert wall(await complete(rt, thursday.task_id)) == "Mon 2026-12-07 09:00"


async def test_monthly_on_the_31st_clamps_to_short_months_and_keeps_the_31st(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(
        rt, clock, due="2026-10-31T10:00", rule="monthly", now=datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    )
    walls = []
    current: Task | None = task
    for _ in range(5):
        assert current is not None
        current = await complete(rt, current.task_id)
        walls.append(wall(current))
    # Not RFC 5545 (which skips months without a 31st): see doable/domain/recurrence.py.
    assert walls == [
        "Mon 2026-11-30 10:00",
        "Thu 2026-12-31 10:00",
        "Sun 2027-01-31 10:00",
        "Sun 2027-02-28 10:00",
        "Wed 2027-03-31 10:00",
    ]


async def test_yearly_on_29_february_waits_for_the_next_leap_year(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(
        rt, clock, due="2028-02-29T09:00", rule="yearly", now=datetime(2028, 2, 28, 12, 0, tzinfo=UTC)
    )
    assert wall(await complete(rt, task.task_id)) == "Sun 2032-02-29 09:00"


async def test_every_three_days(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="every 3 days", now=THURSDAY_NOON)
    second = await complete(rt, task.task_id)
    assert wall(second) == "Mon 2026-11-30 09:00"
    assert second is not None
    assert wall(await complete(rt, second.task_id)) == "Thu 2026-12-03 09:00"


async def test_count_ends_the_series(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="daily", count=2, now=THURSDAY_NOON)
    second = await complete(rt, task.task_id)
    assert wall(second) == "Sat 2026-11-28 09:00"
    assert second is not None
    assert await complete(rt, second.task_id) is None
    assert await tasks_of(rt, "alice", "pending") == []


async def test_until_ends_the_series_after_its_whole_day(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(
        rt, clock, due="2026-11-27T21:00", rule="daily", until=date(2026, 11, 28), now=THURSDAY_NOON
    )
    last = await complete(rt, task.task_id)
    assert wall(last) == "Sat 2026-11-28 21:00"
    assert last is not None
    assert await complete(rt, last.task_id) is None


async def test_nine_oclock_stays_nine_across_both_berlin_dst_changes(rt: Runtime, clock: ManualClock) -> None:
    berlin = "Europe/Berlin"
    spring = await start_series(
        rt, clock, due="2026-03-28T09:00", rule="daily", tz=berlin, now=datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    )
    after_spring = await complete(rt, spring.task_id)
    assert wall(after_spring, berlin) == "Sun 2026-03-29 09:00"
    assert after_spring is not None and after_spring.due_at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)

    autumn = await start_series(
        rt, clock, due="2026-10-22T09:00", rule="weekly", tz=berlin, now=datetime(2026, 10, 21, 12, 0, tzinfo=UTC)
    )
    after_autumn = await complete(rt, autumn.task_id)
    assert wall(after_autumn, berlin) == "Thu 2026-10-29 09:00"
    assert after_autumn is not None and after_autumn.due_at == datetime(2026, 10, 29, 8, 0, tzinfo=UTC)


async def test_new_york_weekly_keeps_its_local_time_when_dst_starts(rt: Runtime, clock: ManualClock) -> None:
    ny = "America/New_York"
    task = await start_series(
        rt, clock, due="2026-03-02T09:00", rule="weekly", tz=ny, now=datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    )
    nxt = await complete(rt, task.task_id)
    assert wall(nxt, ny) == "Mon 2026-03-09 09:00"
    assert nxt is not None and nxt.due_at == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)


async def test_late_completion_skips_missed_occurrences_instead_of_a_backlog(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(
        rt, clock, due="2026-11-21T09:00", rule="daily", now=datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    )
    clock.set(THURSDAY_NOON)  # five occurrences went by; today's 09:00 is past too
    nxt = await complete(rt, task.task_id)
    assert wall(nxt) == "Fri 2026-11-27 09:00"
    assert [t.task_id for t in await tasks_of(rt, "alice", "pending")] == [nxt.task_id if nxt else None]


async def test_late_all_day_completion_continues_from_today(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-21", rule="daily", now=datetime(2026, 11, 20, tzinfo=UTC))
    clock.set(THURSDAY_NOON)
    nxt = await complete(rt, task.task_id)
    assert nxt is not None and nxt.all_day and nxt.due_date == date(2026, 11, 26)


async def test_next_occurrence_carries_everything_over(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(
        rt,
        clock,
        due="2026-11-27T09:00",
        rule="weekly",
        now=THURSDAY_NOON,
        description="Agenda in the doc",
        priority="high",
        tags=["work", "team"],
        reminders=[ReminderIn(minutes_before=15), ReminderIn(at="2026-11-26T20:00")],
    )
    nxt = await complete(rt, task.task_id)
    assert nxt is not None
    assert (nxt.title, nxt.description, nxt.priority, nxt.tags) == (
        "Repeat",
        "Agenda in the doc",
        Priority.HIGH,
        ("work", "team"),
    )
    assert nxt.recurrence == task.recurrence and nxt.series_id == task.series_id
    # The offset stays; the absolute reminder keeps its distance to the due date.
    assert nxt.reminders == (Reminder(minutes_before=15), Reminder(at=datetime(2026, 12, 3, 20, 0, tzinfo=UTC)))


async def test_the_same_completed_event_delivered_twice_creates_one_occurrence(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="daily", now=THURSDAY_NOON)
    assert await complete(rt, task.task_id) is not None
    [completed] = [e for e in await rt.outbox.history("alice", task.task_id) if e.event_type is EventType.COMPLETED]
    assert rt.delivery is not None
    data = completed.model_dump(mode="json")
    # A redelivery (same id), and a duplicate published under another id.
    await rt.delivery.bus.publish(topology.TASK_EVENTS, data, key="alice", event_id=completed.event_id)
    await rt.delivery.bus.publish(topology.TASK_EVENTS, data, key="alice", event_id=str(uuid.uuid4()))
    await settle(rt)
    assert len(await tasks_of(rt, "alice", "pending")) == 1


async def test_concurrent_duplicates_create_one_occurrence(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="daily", now=THURSDAY_NOON)
    done = task.evolve(completed=True, completed_at=THURSDAY_NOON)
    results = await asyncio.gather(*(rt.service.create_next_occurrence(done) for _ in range(5)))
    assert len({r.task_id for r in results if r is not None}) == 1
    assert len(await tasks_of(rt, "alice")) == 2


@pytest.mark.postgres
async def test_concurrent_duplicates_create_one_occurrence_on_postgres(pg_runtime: Runtime) -> None:
    await pg_runtime.service.set_timezone("alice", "Europe/Berlin")
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    task = await pg_runtime.service.add("alice", NewTask(title="Standup", due=due, recurrence="daily"))
    done = task.evolve(completed=True, completed_at=datetime.now(UTC))
    results = await asyncio.gather(*(pg_runtime.service.create_next_occurrence(done) for _ in range(8)))
    assert len({r.task_id for r in results if r is not None}) == 1
    assert len(await tasks_of(pg_runtime, "alice")) == 2


async def test_reopening_and_completing_again_does_not_fork_the_series(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="daily", now=THURSDAY_NOON)
    nxt = await complete(rt, task.task_id)
    await rt.service.reopen("alice", task.task_id)
    await settle(rt)
    clock.advance(timedelta(days=3))  # even once the original next date is past
    assert await complete(rt, task.task_id) is None
    assert nxt is not None and [t.task_id for t in await tasks_of(rt, "alice", "pending")] == [nxt.task_id]


async def test_deleting_a_completed_occurrence_keeps_the_series_going(rt: Runtime, clock: ManualClock) -> None:
    task = await start_series(rt, clock, due="2026-11-27T09:00", rule="daily", now=THURSDAY_NOON)
    second = await complete(rt, task.task_id)
    await rt.service.delete("alice", task.task_id)
    await settle(rt)
    assert second is not None
    assert wall(await complete(rt, second.task_id)) == "Sun 2026-11-29 09:00"
