"""4. Event pipeline, embedded mode: task events from the outbox, through the relay and the
in-process bus, to the recurrence, audit and reminder handlers (and notifications/live, as in
`doable serve`). The events are recorded first (real service writes, many users, some with
reminders, some recurring and completed, so recurrence creates successors: more events), then the
pipeline is timed until it is idle. Checked from the consumers' own records: every task event
processed exactly once by each task-events consumer, none lost, none duplicated."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from bench.core import Section
from bench.procs import JWT_SECRET
from doable.bootstrap import build
from doable.platform import topology
from doable.platform.settings import Settings
from doable.ports.messages import Message, Outcome, Subscription
from doable.usecases.inputs import NewTask, ReminderIn

TASK_EVENT_CONSUMERS = ("audit-task-events", "recurrence-task-events", "reminders-task-events")


async def workload(service: Any, users: int, per_user: int, *, prefix: str = "ev-user") -> int:
    """Writes that record events (this benchmark's and `events_dapr`'s): adds (a tenth with a
    reminder, a tenth recurring daily, half with a due date), then completes of a quarter of them
    (every recurring one among them makes a successor). Returns the number of writes."""
    writes = 0
    for u in range(users):
        user = f"{prefix}-{u:03d}"
        ids = []
        for i in range(per_user):
            new = NewTask(
                title=f"Event task {i}",
                due=f"2027-03-{1 + i % 28:02d}T09:00" if i % 2 == 0 else None,
                reminders=[ReminderIn(minutes_before=30)] if i % 10 == 0 else None,
                recurrence="daily" if i % 10 == 2 else None,
                tags=["work"] if i % 3 == 0 else None,
            )
            ids.append((await service.add(user, new)).task_id)
            writes += 1
        for tid in ids[::4]:
            await service.complete(user, tid)
            writes += 1
    return writes


async def one_run(work: Path, users: int, per_user: int) -> dict[str, Any]:
    settings = Settings(data_dir=work, jwt_secret=SecretStr(JWT_SECRET))
    runtime = await build(settings)
    try:
        assert runtime.delivery is not None and runtime.sql_engine is not None
        seen: list[str] = []

        async def count(message: Message) -> Outcome:
            seen.append(message.id)
            return Outcome.SUCCESS

        runtime.delivery.bus.subscribe(Subscription(topic=topology.TASK_EVENTS, handler=count, name="bench-counter"))
        writes = await workload(runtime.service, users, per_user)
        recorded = await runtime.outbox.depth()
        t0 = time.perf_counter()
        await runtime.delivery.settle(max_rounds=10_000)
        elapsed = time.perf_counter() - t0
        async with runtime.sql_engine.connect() as conn:
            outbox = (await conn.execute(sa.text("SELECT count(*), sum(published) FROM outbox"))).one()
            per_consumer = {
                r[0]: (r[1], r[2])
                for r in await conn.execute(
                    sa.text(
                        "SELECT consumer, count(*), count(DISTINCT message_id) FROM processed_messages GROUP BY consumer"
                    )
                )
            }
            audit = (
                (await conn.execute(sa.text("SELECT count(*) FROM audit_events"))).scalar_one()
                if await _has(conn, "audit_events")
                else None
            )
            dead = (await conn.execute(sa.text("SELECT count(*) FROM dead_letters"))).scalar_one()
            payloads = (await conn.execute(sa.text("SELECT payload FROM outbox"))).scalars().all()
        completions = sum(
            1
            for event in map(json.loads, payloads)
            if event["event_type"] == "completed" and event["task_data"].get("recurrence")
        )
        total_events = int(outbox[0])
        # What each consumer leaves behind: audit one row per event; recurrence a processed record
        # per completion of a repeating task (the only events it acts on); reminders keeps no
        # record (it converges to what each task wants), so the counting subscriber stands for it.
        handled = {c: per_consumer.get(c, (0, 0)) for c in TASK_EVENT_CONSUMERS}
        left_behind = {
            "audit-task-events": (int(audit or 0), total_events),
            "recurrence-task-events": (handled["recurrence-task-events"][1], completions),
            "reminders-task-events": (len(set(seen)), total_events),
        }
        lost = sum(max(0, want - got) for got, want in left_behind.values())
        duplicated = sum(n - distinct for n, distinct in handled.values()) + (len(seen) - len(set(seen)))
        return {
            "writes": writes,
            "recorded_before": recorded,
            "events": total_events,
            "published": int(outbox[1] or 0),
            "seconds": elapsed,
            "events_per_s": total_events / elapsed,
            "deliveries_per_s": total_events * len(TASK_EVENT_CONSUMERS) / elapsed,
            "handled": {c: n for c, (n, _) in handled.items()},
            "bus_deliveries_seen": len(seen),
            "audit_rows": audit,
            "dead_letters": int(dead),
            "lost": lost,
            "duplicated": duplicated,
        }
    finally:
        await runtime.aclose()


async def _has(conn: Any, table: str) -> bool:
    return bool(await conn.run_sync(lambda sync: sa.inspect(sync).has_table(table)))


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs, users, per_user = (2, 10, 40) if quick else (3, 20, 40)
    section.params.update(runs=runs, users=users, adds_per_user=per_user, completes_per_user=per_user // 4)
    results = []
    for r in range(runs):
        res = await one_run(work / f"events-{r}", users, per_user)
        results.append(res)
        section.figure("throughput", unit="events/s").add_run({"events_per_s": res["events_per_s"], "n": res["events"]})
        section.figure("handler_deliveries", unit="deliveries/s").add_run(
            {"deliveries_per_s": res["deliveries_per_s"], "n": res["events"]}
        )
    section.info["runs"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results]
    section.target(
        "4",
        "event pipeline throughput (median of runs)",
        section.figures["throughput"].median("events_per_s"),
        1000.0,
        "events/s",
        ">=",
    )
    section.target(
        "4",
        "events lost (all runs)",
        float(sum(r["lost"] for r in results) + sum(r["events"] - r["published"] for r in results)),
        0,
        "events",
        "==",
    )
    section.target("4", "events duplicated (all runs)", float(sum(r["duplicated"] for r in results)), 0, "events", "==")
