"""A day of one user's tasks, replayable after a crash: the scenario the kill tests run.

Run as a program (`python -m tests.reliability.crash_scenario DATA_DIR KILL_AT`) it builds an
embedded runtime on DATA_DIR, counts every SQL statement from then on, and SIGKILLs itself just
before statement KILL_AT: the write in progress never commits, rolls back or cleans up, as in a
crash or an OOM kill. The parent then restarts on the same data and replays the scenario, as a
client retries what it never saw acknowledged (with the same idempotency keys).

Every write carries an idempotency key, and time comes from a manual clock set to the same
instants at the same steps, so a replay after any crash must end in exactly the state an
uninterrupted run ends in.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from doable.adapters.sql.sqlite_driver import statement_engines
from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.domain.query import SortField, Status
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
USER = "alice"


def settings_for(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, jwt_secret=SecretStr("crash-test-" + "x" * 40), log_format="console", log_level="warning"
    )


async def scenario(runtime: Runtime, clock: ManualClock, *, restarted_after: timedelta = timedelta(0)) -> None:
    """The writes, in order; each one may be replayed (same key: same result). A replay runs
    `restarted_after` later than the run that crashed: a restart takes time, and claims the dead
    process held (a reminder it was sending) expire meanwhile."""
    service = runtime.service
    delivery = runtime.delivery
    assert delivery is not None
    clock.set(T0 + restarted_after)

    def iso(delta: timedelta) -> str:
        return (T0 + delta).isoformat()

    await service.set_timezone(USER, "Europe/Berlin")
    await service.add(
        USER,
        NewTask(
            title="Weekly review", due=iso(timedelta(hours=1)), reminders=[{"minutes_before": 30}], recurrence="weekly"
        ),  # type: ignore[list-item]
        idempotency_key="add-weekly",
    )
    await service.add(
        USER,
        NewTask(title="Buy milk", tags=["home"], due=iso(timedelta(hours=2)), reminders=[{"minutes_before": 15}]),  # type: ignore[list-item]
        idempotency_key="add-milk",
    )
    await service.add(
        USER,
        NewTask(
            title="Pay rent",
            priority="high",
            due=iso(timedelta(hours=2)),
            reminders=[{"at": iso(timedelta(minutes=90))}],
        ),  # type: ignore[list-item]
        idempotency_key="add-rent",
    )
    await service.add(
        USER,
        NewTask(title="Water plants", due=iso(timedelta(hours=1)), recurrence="daily"),
        idempotency_key="add-plants",
    )
    await delivery.settle()
    await service.update(USER, 2, TaskChanges(title="Buy oat milk"), idempotency_key="rename-milk")
    # Two repeating tasks completed together: their next occurrences (tasks 5 and 6, in this
    # order) are made in one unit of work for the batch (the recurrence worker's batch path).
    await service.complete(USER, 1, idempotency_key="done-weekly")
    await service.complete(USER, 4, idempotency_key="done-plants")
    await delivery.settle()
    clock.set(T0 + restarted_after + timedelta(hours=3))  # every reminder of the day is due now
    await delivery.settle()
    await delivery.cron.tick()  # the sweeper, for any reminder whose job went missing
    await delivery.settle()
    await service.delete(USER, 2, idempotency_key="delete-milk")
    # The next weekly occurrence is task 5 (a client read that id before it crashed, and retries it).
    await service.complete(USER, 5, idempotency_key="done-weekly-2")
    await delivery.settle()
    # Later: the sweeper runs again. A reminder whose sender died mid-send (claimed, never
    # finished) is sent once its claim's lease has expired; never a second time.
    clock.set(T0 + restarted_after + timedelta(hours=3, minutes=10))
    await delivery.cron.tick()
    await delivery.settle()


async def outcome(runtime: Runtime) -> dict[str, Any]:
    """What the user and the system hold afterwards, without event ids (random) and write times:
    work the crash interrupted is finished by the restarted process, at its own clock's time."""
    assert runtime.sql_engine is not None
    page, _ = await runtime.service.list(USER, ListRequest(status=Status.ALL, sort=SortField.CREATED, limit=200))
    async with runtime.sql_engine.connect() as conn:

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(tuple(r) for r in (await conn.execute(sa.text(sql))).all())

        state = {
            "tasks": [
                (t.task_id, t.title, t.completed, t.due_at, t.series_id, t.version, t.priority, t.tags, t.reminders)
                for t in page.tasks
            ],
            "event_types": await rows("SELECT task_id, json_extract(payload, '$.event_type') FROM outbox"),
            "unpublished": await rows("SELECT seq FROM outbox WHERE published = 0"),
            "audit": await rows("SELECT task_id, event_type, changed FROM audit_events"),
            "audit_per_event": await rows(
                "SELECT event_id, count(*) FROM audit_events GROUP BY event_id HAVING count(*) > 1"
            ),
            "audit_missing": await rows(
                "SELECT event_id FROM outbox WHERE event_id NOT IN (SELECT event_id FROM audit_events)"
            ),
            "series": await rows("SELECT series_id, after_us, task_id FROM series_links"),
            "notifications": await rows("SELECT task_id, title, kind FROM notifications"),
            "reminders_sent": await rows("SELECT job_name, fire_us, state FROM reminders_sent"),
            "jobs": await rows("SELECT owner, name, due_us FROM scheduled_jobs"),
            "ledger": await rows("SELECT job_name, task_id, reminder_key, fire_us FROM reminder_schedule"),
            "dead_letters": await rows("SELECT subscription, reason FROM dead_letters"),
            "counter": await rows("SELECT user_id, last_task_id FROM user_counters"),
        }
    return state


def arm(runtime: Runtime, kill_at: int) -> list[int]:
    """Count SQL statements; SIGKILL this process just before statement `kill_at` (0: never)."""
    assert runtime.sql_engine is not None
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1
        if counter[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    for engine in statement_engines(runtime.sql_engine):
        sa.event.listen(engine, "before_cursor_execute", count)
    return counter


async def main(data_dir: Path, kill_at: int) -> None:
    clock = ManualClock(T0)
    runtime = await build(settings_for(data_dir), clock=clock)
    counter = arm(runtime, kill_at)
    try:
        await scenario(runtime, clock)
    finally:
        await runtime.aclose()
    print(f"statements={counter[0]}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
