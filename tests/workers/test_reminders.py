"""Reminders on a ManualClock: one job per reminder, moved, cancelled, sent once, and recovered
after a restart or a lost job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from doable.adapters.sql.worker_schema import ScheduledJobRow
from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.domain.reminders import job_name
from doable.platform import topology
from doable.platform.settings import Settings
from doable.usecases.inputs import NewTask, ReminderIn, TaskChanges
from tests.workers.conftest import Recorder, advance, settle, sweep

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def add_with_reminder(rt: Runtime, due: str = "2026-11-26T13:00", minutes_before: int = 30) -> int:
    task = await rt.service.add(
        "alice", NewTask(title="Call the plumber", due=due, reminders=[ReminderIn(minutes_before=minutes_before)])
    )
    await settle(rt)
    return task.task_id


async def inbox(rt: Runtime, user: str = "alice") -> list[str]:
    assert rt.inbox is not None
    items, _ = await rt.inbox.recent(user, limit=200)
    return [f"{n.task_id}@{n.data['remind_at']}" for n in items]


async def pending_jobs(rt: Runtime) -> list[tuple[str, datetime]]:
    assert rt.delivery is not None
    return [(j.name, j.due_at) for j in await rt.delivery.jobs.pending("reminders")]


async def test_a_reminder_is_scheduled_for_its_exact_time_and_sent_once(
    rt: Runtime, clock: ManualClock, record: Callable[[str], Recorder]
) -> None:
    reminders = record(topology.REMINDERS)
    task_id = await add_with_reminder(rt)
    assert await pending_jobs(rt) == [
        (job_name("alice", task_id, "before-30m"), datetime(2026, 11, 26, 12, 30, tzinfo=UTC))
    ]
    await advance(rt, clock, timedelta(minutes=29, seconds=59))
    assert await inbox(rt) == []
    await advance(rt, clock, timedelta(seconds=1))
    assert await inbox(rt) == [f"{task_id}@2026-11-26T12:30:00Z"]
    [message] = reminders.messages
    assert {k: message.data[k] for k in ("task_id", "title", "due_at", "remind_at", "user_id")} == {
        "task_id": task_id,
        "title": "Call the plumber",
        "due_at": "2026-11-26T13:00:00Z",
        "remind_at": "2026-11-26T12:30:00Z",
        "user_id": "alice",
    }
    assert message.data["event_id"] == message.id
    await advance(rt, clock, timedelta(hours=1))
    await sweep(rt)
    assert len(await inbox(rt)) == 1
    assert await pending_jobs(rt) == []


async def test_changing_the_due_date_moves_the_reminder(rt: Runtime, clock: ManualClock) -> None:
    task_id = await add_with_reminder(rt)
    await rt.service.update("alice", task_id, TaskChanges(due="2026-11-26T15:00"))
    await settle(rt)
    assert [due for _, due in await pending_jobs(rt)] == [datetime(2026, 11, 26, 14, 30, tzinfo=UTC)]
    await advance(rt, clock, timedelta(hours=1))  # the old time passes quietly
    assert await inbox(rt) == []
    await advance(rt, clock, timedelta(hours=1, minutes=30))
    assert await inbox(rt) == [f"{task_id}@2026-11-26T14:30:00Z"]


async def test_completing_deleting_or_removing_the_reminder_cancels_it(rt: Runtime, clock: ManualClock) -> None:
    completed = await add_with_reminder(rt)
    deleted = await add_with_reminder(rt)
    cleared = await add_with_reminder(rt)
    assert len(await pending_jobs(rt)) == 3
    await rt.service.complete("alice", completed)
    await rt.service.delete("alice", deleted)
    await rt.service.update("alice", cleared, TaskChanges(reminders=None))
    await settle(rt)
    assert await pending_jobs(rt) == []
    await advance(rt, clock, timedelta(hours=2))
    await sweep(rt)
    assert await inbox(rt) == []


async def test_a_reopened_task_gets_its_future_reminder_back(rt: Runtime, clock: ManualClock) -> None:
    task_id = await add_with_reminder(rt)
    await rt.service.complete("alice", task_id)
    await rt.service.reopen("alice", task_id)
    await settle(rt)
    assert len(await pending_jobs(rt)) == 1
    await advance(rt, clock, timedelta(minutes=30))
    assert len(await inbox(rt)) == 1


async def test_no_reminder_for_a_task_completed_before_its_event_reached_the_worker(
    rt: Runtime, clock: ManualClock
) -> None:
    task_id = await add_with_reminder(rt)
    await rt.service.complete("alice", task_id)  # the completed event is still in the outbox
    clock.advance(timedelta(minutes=30))
    assert rt.delivery is not None
    await rt.delivery.jobs.fire_due()
    await rt.delivery.bus.idle()
    assert await inbox(rt) == []


async def test_restart_loses_no_reminder_and_sends_an_overdue_one_once(
    rt: Runtime, clock: ManualClock, worker_settings: Settings
) -> None:
    task_id = await add_with_reminder(rt)
    await rt.aclose()  # the process stops before the reminder's time ...
    clock.advance(timedelta(hours=3))  # ... and comes back long after it
    for _ in range(2):  # two restarts: the reminder goes out on the first only
        restarted = await build(worker_settings, clock=clock)
        try:
            await restarted.start()
            assert restarted.delivery is not None
            await settle(restarted)
            assert await inbox(restarted) == [f"{task_id}@2026-11-26T12:30:00Z"]
        finally:
            await restarted.aclose()


async def test_a_lost_job_is_sent_once_by_the_sweeper(rt: Runtime, clock: ManualClock) -> None:
    task_id = await add_with_reminder(rt)
    assert rt.sql_engine is not None
    async with rt.sql_engine.begin() as conn:  # the job store lost it (e.g. the scheduler's data was reset)
        await conn.execute(sa.delete(ScheduledJobRow.__table__))
    await advance(rt, clock, timedelta(minutes=30))
    await sweep(rt)
    assert await inbox(rt) == []  # within the grace period the job still has its chance
    await advance(rt, clock, timedelta(minutes=1))
    await sweep(rt)
    await sweep(rt)
    assert await inbox(rt) == [f"{task_id}@2026-11-26T12:30:00Z"]


async def test_job_and_sweeper_racing_send_once(rt: Runtime, clock: ManualClock) -> None:
    await add_with_reminder(rt)
    clock.advance(timedelta(hours=1))
    assert rt.delivery is not None
    await asyncio.gather(rt.delivery.jobs.fire_due(), rt.delivery.cron.tick(), rt.delivery.cron.tick())
    await settle(rt)
    assert len(await inbox(rt)) == 1


async def test_a_reminder_already_due_when_set_goes_out_at_once(rt: Runtime, clock: ManualClock) -> None:
    task_id = await add_with_reminder(rt, due="2026-11-26T12:10")
    assert await inbox(rt) == [f"{task_id}@2026-11-26T11:40:00Z"]


async def test_users_only_get_their_own_reminders(rt: Runtime, clock: ManualClock) -> None:
    await add_with_reminder(rt)
    await rt.service.add(
        "bob", NewTask(title="Bob's", due="2026-11-26T14:00", reminders=[ReminderIn(minutes_before=0)])
    )
    await advance(rt, clock, timedelta(hours=3))
    assert [s.split("@")[0] for s in await inbox(rt, "alice")] == ["1"]
    assert await inbox(rt, "bob") == ["1@2026-11-26T14:00:00Z"]
