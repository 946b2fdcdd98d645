"""Repeating tasks through the service and the recurrence worker: anchors, catch-up, COUNT,
skipping, scoped edits, occurrence history, DST and date-only tasks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from doable.domain.errors import InvalidArgument
from doable.domain.occurrences import OccurrenceStatus
from doable.domain.task import Anchor, Reminder, Task
from doable.usecases.inputs import NewTask, RecurrenceIn, ReminderIn, TaskChanges
from tests.agent_tools.conftest import THURSDAY_NOON, complete_and_settle, pending, wall
from tests.workers.conftest import settle

BERLIN = "Europe/Berlin"


async def series(rt: Runtime, due: str, recurrence: RecurrenceIn | str, *, tz: str = "UTC", **fields: object) -> Task:
    await rt.service.set_timezone("alice", tz)
    task = await rt.service.add("alice", NewTask(title="Repeat", due=due, recurrence=recurrence, **fields))  # type: ignore[arg-type]
    await settle(rt)
    return task


async def statuses(rt: Runtime, task_id: int) -> list[tuple[str, str]]:
    records = await rt.service.series.occurrences("alice", task_id)
    assert records is not None
    return [(r.due_at.strftime("%m-%d"), r.status.value) for r in records]


async def test_completing_friday_weekday_task_schedules_monday_at_the_same_local_time(rt: Runtime) -> None:
    task = await series(rt, "2026-11-27T09:00", "weekdays", tz=BERLIN)
    assert wall(await complete_and_settle(rt, task.task_id), BERLIN) == "Mon 2026-11-30 09:00"


async def test_daily_task_three_days_overdue_leaves_one_occurrence_tomorrow_and_three_missed(
    rt: Runtime, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 11, 23, 8, tzinfo=UTC))
    task = await series(rt, "2026-11-23T09:00", "daily")
    clock.set(THURSDAY_NOON)  # Tue, Wed and today's 09:00 went by unattended
    nxt = await complete_and_settle(rt, task.task_id)
    assert wall(nxt) == "Fri 2026-11-27 09:00"
    assert [t.task_id for t in await pending(rt)] == [nxt.task_id if nxt else None]
    assert await statuses(rt, task.task_id) == [
        ("11-26", "missed"),
        ("11-25", "missed"),
        ("11-24", "missed"),
        ("11-23", "completed"),
    ]


async def test_completion_anchored_every_three_days_completed_wednesday_is_next_due_saturday(
    rt: Runtime, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 11, 22, 12, tzinfo=UTC))
    task = await series(rt, "2026-11-23T09:00", RecurrenceIn(rule="every 3 days", anchor="completion"))
    clock.set(datetime(2026, 11, 25, 17, 30, tzinfo=UTC))  # Wednesday, late afternoon
    nxt = await complete_and_settle(rt, task.task_id)
    assert wall(nxt) == "Sat 2026-11-28 09:00"
    assert nxt is not None and nxt.recurrence is not None and nxt.recurrence.anchor is Anchor.COMPLETION
    assert await statuses(rt, task.task_id) == [("11-23", "completed")]  # nothing "missed" on this anchor


async def test_schedule_if_on_time_follows_the_schedule_when_on_time_and_completion_when_late(
    rt: Runtime, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 11, 23, 8, tzinfo=UTC))
    task = await series(rt, "2026-11-23T09:00", RecurrenceIn(frequency="weekly", anchor="schedule_if_on_time"))
    on_time = await complete_and_settle(rt, task.task_id)  # Monday 08:00, before it is due
    assert wall(on_time) == "Mon 2026-11-30 09:00"
    assert on_time is not None
    clock.set(datetime(2026, 12, 2, 15, tzinfo=UTC))  # done on Wednesday: late
    assert wall(await complete_and_settle(rt, on_time.task_id)) == "Wed 2026-12-09 09:00"


@pytest.mark.parametrize("anchor", ["schedule", "completion"])
async def test_count_five_closes_after_the_fifth(rt: Runtime, clock: ManualClock, anchor: str) -> None:
    clock.set(datetime(2026, 11, 26, 8, tzinfo=UTC))
    current: Task | None = await series(rt, "2026-11-26T09:00", RecurrenceIn(rule="daily", count=5, anchor=anchor))  # type: ignore[arg-type]
    done = 0
    while current is not None:
        clock.set(current.due_at - timedelta(minutes=5))  # type: ignore[operator]
        current = await complete_and_settle(rt, current.task_id)
        done += 1
    assert done == 5
    assert await pending(rt) == []


async def test_nine_oclock_in_berlin_stays_nine_across_both_dst_changes(rt: Runtime, clock: ManualClock) -> None:
    clock.set(datetime(2026, 3, 27, 12, tzinfo=UTC))
    spring = await series(rt, "2026-03-28T09:00", "daily", tz=BERLIN)
    after_spring = await complete_and_settle(rt, spring.task_id)
    assert wall(after_spring, BERLIN) == "Sun 2026-03-29 09:00"
    assert after_spring is not None and after_spring.due_at == datetime(2026, 3, 29, 7, tzinfo=UTC)
    clock.set(datetime(2026, 10, 24, 12, tzinfo=UTC))
    autumn = await series(rt, "2026-10-24T09:00", "daily", tz=BERLIN)
    after_autumn = await complete_and_settle(rt, autumn.task_id)
    assert wall(after_autumn, BERLIN) == "Sun 2026-10-25 09:00"
    assert after_autumn is not None and after_autumn.due_at == datetime(2026, 10, 25, 8, tzinfo=UTC)


async def test_skipping_moves_the_occurrence_to_its_next_date_and_records_it(rt: Runtime) -> None:
    task = await series(rt, "2026-11-27T09:00", "weekly", reminders=[ReminderIn(at="2026-11-27T08:00")])
    skipped = (await rt.service.series.skip("alice", task.task_id)).value
    assert skipped.task_id == task.task_id and wall(skipped) == "Fri 2026-12-04 09:00"
    assert skipped.reminders == (Reminder(at=datetime(2026, 12, 4, 8, tzinfo=UTC)),)  # moved along
    assert await statuses(rt, task.task_id) == [("11-27", "skipped")]
    await settle(rt)
    assert [t.task_id for t in await pending(rt)] == [task.task_id]  # no new task: it moved


async def test_skipping_the_last_occurrence_or_a_plain_task_is_refused_with_the_reason(rt: Runtime) -> None:
    last = await series(rt, "2026-11-27T09:00", RecurrenceIn(rule="daily", count=1))
    with pytest.raises(InvalidArgument, match="last occurrence; complete or delete it"):
        await rt.service.series.skip("alice", last.task_id)
    plain = await rt.service.add("alice", NewTask(title="Once"))
    with pytest.raises(InvalidArgument, match="does not repeat"):
        await rt.service.series.skip("alice", plain.task_id)


async def test_an_update_of_title_or_due_keeps_the_recurrence_and_reminders(rt: Runtime) -> None:
    task = await series(
        rt,
        "2026-11-27T09:00",
        RecurrenceIn(rule="weekly", anchor="completion"),
        reminders=[ReminderIn(minutes_before=15)],
    )
    renamed = await rt.service.update("alice", task.task_id, TaskChanges(title="Weekly review"))
    assert renamed.recurrence == task.recurrence and renamed.reminders == task.reminders
    moved = await rt.service.update("alice", task.task_id, TaskChanges(due="2026-11-28T10:00"))
    assert moved.recurrence is not None and moved.recurrence.anchor is Anchor.COMPLETION
    assert moved.recurrence.rule == "FREQ=WEEKLY" and moved.reminders == (Reminder(minutes_before=15),)
    # A rule given as a string keeps the anchor it had.
    restated = await rt.service.update("alice", task.task_id, TaskChanges(recurrence="every 2 weeks"))
    assert restated.recurrence is not None and restated.recurrence.anchor is Anchor.COMPLETION


async def test_scope_this_moves_one_occurrence_and_the_series_carries_on_as_scheduled(rt: Runtime) -> None:
    task = await series(rt, "2026-11-30T09:00", "weekly")
    moved = await rt.service.update(
        "alice", task.task_id, TaskChanges(due="2026-12-01T14:00", title="Sync (moved)"), scope="this"
    )
    assert wall(moved) == "Tue 2026-12-01 14:00" and moved.recurrence == task.recurrence
    assert await statuses(rt, task.task_id) == [("11-30", "rescheduled")]
    nxt = await complete_and_settle(rt, task.task_id)
    assert wall(nxt) == "Mon 2026-12-07 09:00"  # from the scheduled Monday, not the Tuesday
    assert nxt is not None and nxt.title == "Repeat"  # the one-off title stayed with its occurrence


async def test_scope_future_re_anchors_the_series(rt: Runtime) -> None:
    task = await series(rt, "2026-11-30T09:00", "weekly")
    await rt.service.update("alice", task.task_id, TaskChanges(due="2026-12-01T14:00", title="Sync"), scope="future")
    nxt = await complete_and_settle(rt, task.task_id)
    assert wall(nxt) == "Tue 2026-12-08 14:00" and nxt is not None and nxt.title == "Sync"


async def test_scope_all_renames_every_occurrence_and_shifts_the_series(rt: Runtime) -> None:
    task = await series(rt, "2026-11-27T09:00", RecurrenceIn(rule="daily", count=4))
    second = await complete_and_settle(rt, task.task_id)
    assert second is not None
    edited = await rt.service.update(
        "alice", second.task_id, TaskChanges(title="Standup", due="2026-11-28T10:00"), scope="all"
    )
    assert (await rt.service.get("alice", task.task_id)).title == "Standup"  # the completed one too
    assert edited.recurrence is not None and edited.recurrence.start == datetime(2026, 11, 27, 10, tzinfo=UTC)
    third = await complete_and_settle(rt, second.task_id)
    fourth = await complete_and_settle(rt, third.task_id) if third else None
    assert (wall(third), wall(fourth)) == ("Sun 2026-11-29 10:00", "Mon 2026-11-30 10:00")
    assert fourth is not None and await complete_and_settle(rt, fourth.task_id) is None  # COUNT from the start


async def test_scope_this_refuses_a_rule_change(rt: Runtime) -> None:
    task = await series(rt, "2026-11-27T09:00", "weekly")
    with pytest.raises(InvalidArgument, match="scope: 'this' changes one occurrence"):
        await rt.service.update("alice", task.task_id, TaskChanges(recurrence="daily"), scope="this")


async def test_a_date_only_task_never_becomes_a_midnight_instant(rt: Runtime, clock: ManualClock) -> None:
    task = await series(rt, "2026-11-27", "daily", tz=BERLIN)
    renamed = await rt.service.update("alice", task.task_id, TaskChanges(title="Water plants"))
    assert renamed.all_day and renamed.due_date == date(2026, 11, 27)
    skipped = (await rt.service.series.skip("alice", task.task_id)).value
    assert skipped.all_day and skipped.due_date == date(2026, 11, 28)
    nxt = await complete_and_settle(rt, task.task_id)
    assert nxt is not None and nxt.all_day and nxt.due_date == date(2026, 11, 29)
    records = await rt.service.series.occurrences("alice", task.task_id)
    assert records is not None and {r.due_date for r in records} == {date(2026, 11, 27), date(2026, 11, 28)}
    assert {r.status for r in records} == {OccurrenceStatus.SKIPPED, OccurrenceStatus.COMPLETED}


async def test_preview_saves_nothing_and_shows_the_dates(rt: Runtime) -> None:
    await rt.service.set_timezone("alice", BERLIN)
    new = NewTask(title="Rent", due="2027-01-31T09:00", recurrence=RecurrenceIn(frequency="monthly"))
    previewed = await rt.service.add("alice", new, preview=True)
    assert previewed.title == "Rent" and previewed.recurrence is not None
    assert await pending(rt) == []
    await settle(rt)
    assert await rt.outbox.history("alice") == []  # no event either
    task = await rt.service.add("alice", new)
    assert task.task_id == previewed.task_id  # the preview did not use up an id
    changed = await rt.service.update("alice", task.task_id, TaskChanges(title="Rent!"), preview=True)
    assert changed.title == "Rent!" and (await rt.service.get("alice", task.task_id)).title == "Rent"
