"""5. Reminder accuracy, embedded mode: 10,000 pending reminders of which 1,000 fall due within one
half-minute (twice: two runs), with `doable serve`'s relay, job loop, sweeper and workers running
on the real clock. Lateness = when the Reminder Event reaches the bus (topic `reminders`) minus
the reminder's time. The reminders are set up as the reminders worker itself records them
(ledger rows + one job each, from `wanted_reminders` and the worker's job data), in bulk."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from bench.core import Section, percentile
from bench.procs import JWT_SECRET
from doable.adapters.sql.repository import _data_values, _row_values
from doable.adapters.sql.schema import TaskDataRow, TaskRow, UserCounterRow
from doable.adapters.sql.worker_schema import ReminderScheduleRow, ScheduledJobRow
from doable.bootstrap import build
from doable.domain.query import micros
from doable.domain.reminders import ScheduledReminder, wanted_reminders
from doable.domain.task import Reminder, Task
from doable.platform import topology
from doable.platform.settings import Settings
from doable.ports.messages import Message, Outcome, Subscription
from workers.reminders import _job_data

OWNER = "reminders"  # the reminders worker's job owner (its name), as embedded mode schedules them


async def _seed(engine: Any, pending: int, due: int, t0: datetime, window: float, users: int) -> None:
    now = datetime.now(UTC)
    task_rows, data_rows, schedule_rows, job_rows = [], [], [], []
    counters: dict[str, int] = {}
    for i in range(pending):
        user = f"rem-user-{i % users:03d}"
        counters[user] = task_id = counters.get(user, 0) + 1
        if i < due:
            fire_at = t0 + timedelta(seconds=window * i / due)  # window 0: all in the same second
        else:
            fire_at = now + timedelta(days=1 + i % 30, minutes=i % 1440)
        fire_at = fire_at.replace(microsecond=(fire_at.microsecond // 1000) * 1000)
        task = Task(
            user_id=user, task_id=task_id, title=f"Reminder task {i}", reminders=(Reminder(at=fire_at),),
            due_at=fire_at + timedelta(hours=1), created_at=now, updated_at=now,
        )  # fmt: skip
        task_rows.append(_row_values(task))
        data_rows.append(_data_values(task))
        for name, want in wanted_reminders(task).items():
            reminder = ScheduledReminder(
                job_name=name, user_id=user, task_id=task_id, reminder_key=want.reminder_key, fire_at=want.fire_at
            )
            schedule_rows.append({
                "job_name": name, "user_id": user, "task_id": task_id, "reminder_key": want.reminder_key,
                "fire_us": micros(want.fire_at),
            })  # fmt: skip
            job_rows.append({
                "owner": OWNER, "name": name, "due_us": micros(want.fire_at), "payload": json.dumps(_job_data(reminder)),
                "revision": 1, "attempts": 0,
            })  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(sa.insert(TaskRow.__table__), task_rows)
        await conn.execute(sa.insert(TaskDataRow.__table__), data_rows)
        await conn.execute(
            sa.insert(UserCounterRow.__table__), [{"user_id": u, "last_task_id": n} for u, n in counters.items()]
        )
        await conn.execute(sa.insert(ReminderScheduleRow.__table__), schedule_rows)
        await conn.execute(sa.insert(ScheduledJobRow.__table__), job_rows)


async def one_run(work: Path, *, pending: int, due: int, window: float, lead: float = 4.0) -> dict[str, Any]:
    runtime = await build(Settings(data_dir=work, jwt_secret=SecretStr(JWT_SECRET)))
    try:
        assert runtime.delivery is not None and runtime.sql_engine is not None
        lateness: list[float] = []
        ids: list[str] = []
        done = asyncio.Event()

        async def record(message: Message) -> Outcome:
            lateness.append(time.time() - datetime.fromisoformat(message.data["remind_at"]).timestamp())
            ids.append(message.id)
            if len(ids) >= due:
                done.set()
            return Outcome.SUCCESS

        runtime.delivery.bus.subscribe(Subscription(topic=topology.REMINDERS, handler=record, name="bench-reminders"))
        t0 = datetime.now(UTC) + timedelta(seconds=lead)
        await _seed(runtime.sql_engine, pending, due, t0, window, users=100)
        await runtime.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=lead + window + 60)
        except TimeoutError:
            pass
        await asyncio.sleep(0.5)  # anything sent twice would arrive now
        return {
            "lateness_s": lateness,
            "received": len(ids),
            "distinct": len(set(ids)),
            "expected": due,
        }
    finally:
        await runtime.aclose()


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs, pending, due, window = (2, 1_000, 100, 5.0) if quick else (2, 10_000, 1_000, 30.0)
    burst_pending, burst_due = (1_000, 200) if quick else (10_000, 1_000)
    section.params.update(
        runs=runs, pending=pending, due_in_window=due, window_s=window, spread="evenly over the window",
        burst_pending=burst_pending, burst_due=burst_due, burst="all due at the same instant",
    )  # fmt: skip
    results = []
    for r in range(runs):
        res = await one_run(work / f"reminders-{r}", pending=pending, due=due, window=window)
        results.append(res)
        section.figure("lateness", unit="s").add_run(_lateness(res["lateness_s"]))
    bursts = []
    for r in range(runs):
        res = await one_run(work / f"reminders-burst-{r}", pending=burst_pending, due=burst_due, window=0.0)
        bursts.append(res)
        section.figure("burst_lateness", unit="s").add_run(_lateness(res["lateness_s"]))
    section.info["runs"] = [{k: v for k, v in r.items() if k != "lateness_s"} for r in results]
    section.info["burst_runs"] = [{k: v for k, v in r.items() if k != "lateness_s"} for r in bursts]
    fig = section.figures["lateness"]
    section.target("5", "reminder lateness p99", fig.median("p99"), 1.0, "s")
    section.target(
        "5",
        f"burst of {burst_due:,} due at once: lateness p99",
        section.figures["burst_lateness"].median("p99"),
        2.0,
        "s",
    )
    everything = results + bursts
    missing = sum(r["expected"] - r["distinct"] for r in everything)
    dupes = sum(r["received"] - r["distinct"] for r in everything)
    section.target("5", "reminders missing or sent twice", float(max(missing, 0) + dupes), 0, "reminders", "==")


def _lateness(lat: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat) if lat else float("nan"),
        "n": len(lat),
    }
