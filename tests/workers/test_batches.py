"""Batch-first delivery (issue 16): the in-process bus hands batch handlers what their lanes have
ready; each message is settled on its own (success, retry, dead letter), order per key holds
across batches, and a redelivered batch changes nothing. The job loop fires due jobs in batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from doable.adapters.embedded.bus import InProcessBus, RetryPolicy
from doable.adapters.embedded.jobs import EmbeddedJobs
from doable.adapters.embedded.relay import publish_task_events
from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from doable.domain.errors import InvalidArgument
from doable.ports.messages import Job, Message, Outcome, Outgoing, Subscription
from doable.usecases.inputs import NewTask, ReminderIn
from tests.workers.conftest import settle

CLOCK = ManualClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def record(self, **fields: Any) -> bool:
        self.records.append(fields)
        return True


def bus_with(dead: DeadLetters, attempts: int = 3, concurrency: int = 4) -> InProcessBus:
    return InProcessBus(
        CLOCK,
        retry=RetryPolicy(attempts=attempts, first_delay=0.1),
        dead_letters=dead,
        sleep=Sleeps(),
        concurrency=concurrency,
    )


def entries(key: str, ids: Sequence[str]) -> list[Outgoing]:
    return [Outgoing(data={"key": key, "id": i}, key=key, event_id=i) for i in ids]


async def never_called(_: Message) -> Outcome:
    raise AssertionError("the batch handler is used")


async def test_a_batch_is_handed_whole_and_a_retried_message_goes_again_with_those_after_it() -> None:
    dead = DeadLetters()
    bus = bus_with(dead)
    calls: list[list[str]] = []
    failed_once: set[str] = set()

    async def handle(messages: Sequence[Message]) -> list[Outcome]:
        calls.append([m.id for m in messages])
        outcomes = []
        for m in messages:
            if m.id == "b" and "b" not in failed_once:
                failed_once.add("b")
                outcomes.append(Outcome.RETRY)
            else:
                outcomes.append(Outcome.SUCCESS)
        return outcomes

    bus.subscribe(Subscription(topic="t", handler=never_called, name="s", batch_handler=handle))
    await bus.publish_batch("t", entries("u", ["a", "b", "c"]))
    # One call for the batch; then "b" (it alone used up an attempt) again with "c" after it.
    assert calls == [["a", "b", "c"], ["b", "c"]]
    assert dead.records == []


async def test_a_message_that_keeps_failing_is_dead_lettered_alone() -> None:
    dead = DeadLetters()
    bus = bus_with(dead, attempts=3)
    handled: list[str] = []

    async def handle(messages: Sequence[Message]) -> list[Outcome]:
        outcomes = []
        for m in messages:
            if m.id == "bad":
                outcomes.append(Outcome.RETRY)
            else:
                handled.append(m.id)
                outcomes.append(Outcome.SUCCESS)
        return outcomes

    bus.subscribe(Subscription(topic="t", handler=never_called, name="s", batch_handler=handle))
    await bus.publish_batch("t", entries("u", ["a", "bad", "c"]) + entries("v", ["x", "y"]))
    assert [(r["message_id"], r["attempts"]) for r in dead.records] == [("bad", 3)]
    assert "a" in handled and "c" in handled and "x" in handled and "y" in handled


async def test_a_batch_that_raises_is_retried_message_by_message_so_only_the_bad_one_is_dropped() -> None:
    dead = DeadLetters()
    bus = bus_with(dead)
    done: list[str] = []

    async def handle(messages: Sequence[Message]) -> list[Outcome]:
        if any(m.id == "poison" for m in messages):
            raise InvalidArgument("data", "cannot be read")  # the whole transaction fails
        done.extend(m.id for m in messages)
        return [Outcome.SUCCESS] * len(messages)

    bus.subscribe(Subscription(topic="t", handler=never_called, name="s", batch_handler=handle))
    await bus.publish_batch("t", entries("u", ["a", "poison", "b"]) + entries("v", ["c"]))
    assert [r["message_id"] for r in dead.records] == ["poison"]
    assert sorted(done) == ["a", "b", "c"]
    assert dead.records[0]["reason"].startswith("dropped")


async def test_order_per_key_holds_across_batches_and_lanes_are_combined() -> None:
    dead = DeadLetters()
    bus = bus_with(dead, concurrency=1)  # one call at a time: what waits goes in together
    seen: list[tuple[str, str]] = []
    sizes: list[int] = []
    gate = asyncio.Event()

    async def handle(messages: Sequence[Message]) -> list[Outcome]:
        sizes.append(len(messages))
        if len(sizes) == 1:
            await gate.wait()  # while the first call runs, the next batches queue up
        seen.extend((m.data["key"], m.id) for m in messages)
        return [Outcome.SUCCESS] * len(messages)

    bus.subscribe(Subscription(topic="t", handler=never_called, name="s", batch_handler=handle, max_batch=1000))
    first = asyncio.create_task(bus.publish_batch("t", entries("u", ["u1"])))
    await asyncio.sleep(0.01)
    later = [
        asyncio.create_task(bus.publish_batch("t", entries(key, [f"{key}{n}"])))
        for n in range(2, 6)
        for key in ("u", "v", "w")
    ]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *later)
    for key in ("u", "v", "w"):
        mine = [i for k, i in seen if k == key]
        assert mine == sorted(mine), (key, mine)
    # u1 alone; then v's and w's waiting lanes in one call (8), then u's next batch (4).
    assert sizes == [1, 8, 4] and len(seen) == 13


async def test_a_redelivered_batch_of_task_events_changes_nothing(rt: Runtime, clock: ManualClock) -> None:
    assert rt.delivery is not None and rt.sql_engine is not None
    clock.set(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    for i in range(6):
        task = await rt.service.add(
            f"re{i % 2}",
            NewTask(
                title=f"t{i}",
                due="2026-11-27T09:00",
                reminders=[ReminderIn(minutes_before=30)],
                recurrence="daily" if i % 3 == 0 else None,
            ),
        )
        if i % 3 == 0:
            await rt.service.complete(f"re{i % 2}", task.task_id)
    await settle(rt)

    async def snapshot() -> dict[str, Any]:
        assert rt.sql_engine is not None
        # (A job is scheduled again on redelivery, which only bumps its revision: defect 16.)
        queries = {
            "audit_events": "SELECT * FROM audit_events ORDER BY 1",
            "reminder_schedule": "SELECT * FROM reminder_schedule ORDER BY 1",
            "scheduled_jobs": "SELECT owner, name, due_us, payload, attempts FROM scheduled_jobs ORDER BY 1, 2",
            "tasks": "SELECT * FROM tasks ORDER BY 1",
            "outbox": "SELECT * FROM outbox ORDER BY 1",
        }
        async with rt.sql_engine.connect() as conn:
            return {table: (await conn.execute(sa.text(q))).all() for table, q in queries.items()}

    before = await snapshot()
    events = [e for user in ("re0", "re1") for e in reversed(await rt.outbox.history(user, limit=100))]
    assert await publish_task_events(rt.delivery.bus, events) == set()  # the whole batch again
    await rt.delivery.bus.idle()
    await settle(rt)
    after = await snapshot()
    for table in before:
        assert after[table] == before[table], table


async def test_due_jobs_fire_in_batches_and_each_settles_on_its_own(rt: Runtime, clock: ManualClock) -> None:
    assert rt.sql_engine is not None
    jobs = EmbeddedJobs(rt.sql_engine, clock, chunk=10, concurrency=2)
    batches: list[int] = []
    tries: dict[str, int] = {}

    async def single(_: Job) -> Outcome:
        raise AssertionError("the batch handler is used")

    async def batch(fired: Sequence[Job]) -> list[Outcome]:
        batches.append(len(fired))
        outcomes = []
        for job in fired:
            tries[job.name] = tries.get(job.name, 0) + 1
            outcomes.append(Outcome.RETRY if job.name == "j07" and tries[job.name] == 1 else Outcome.SUCCESS)
        return outcomes

    jobs.handle("w", single, batch)
    now = clock.now()
    await jobs.schedule_many("w", [Job(name=f"j{n:02d}", due_at=now, data={"n": n}) for n in range(25)])
    assert await jobs.fire_due() == 25
    assert sorted(batches) == [5, 10, 10]
    assert [j.name for j in await jobs.pending("w")] == ["j07"]  # only the retried one stays, later
    clock.advance(timedelta(seconds=5))
    assert await jobs.fire_due() == 1
    assert await jobs.pending("w") == [] and tries["j07"] == 2
