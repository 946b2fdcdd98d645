"""Redelivery storms and out-of-order delivery of task events: the final state is right and every
handler is idempotent. Clock jumps, forward and back: no reminder fires twice, none is skipped.

The events are real (the service records them in the outbox); the storm hands them to the
workers' subscriptions (deduplication included, as in production) shuffled and repeated, then
the relay delivers the outbox in order as usual.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.domain.query import SortField, Status
from doable.domain.reminders import wanted_reminders
from doable.platform import topology
from doable.platform.settings import Settings
from doable.ports.messages import Message
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from tests.reliability.fuzz import Tried, fuzz

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
USERS = itertools.count()


@pytest.fixture
async def rt(settings: Settings, clock: ManualClock) -> AsyncIterator[Runtime]:
    runtime = await build(settings, clock=clock)
    try:
        yield runtime
    finally:
        await runtime.aclose()


def iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


OPS = st.lists(
    st.sampled_from(["move", "remind", "complete", "reopen", "delete", "rename", "add"]), min_size=2, max_size=8
)


async def history_of(rt: Runtime, user: str) -> list[Any]:
    return list(reversed(await rt.outbox.history(user, limit=500)))


async def apply_ops(rt: Runtime, user: str, ops: list[str]) -> None:
    service = rt.service
    await service.add(
        user,
        NewTask(title="weekly", due=iso(timedelta(days=1)), reminders=[{"minutes_before": 30}], recurrence="weekly"),  # type: ignore[list-item]
    )
    await service.add(
        user, NewTask(title="once", due=iso(timedelta(days=2)), reminders=[{"at": iso(timedelta(hours=30))}])
    )  # type: ignore[list-item]
    hours = itertools.count(3)
    for op in ops:
        page, _ = await service.list(user, ListRequest(status=Status.ALL, sort=SortField.CREATED, limit=200))
        if not page.tasks:
            await service.add(
                user, NewTask(title="again", due=iso(timedelta(days=3)), reminders=[{"minutes_before": 5}])
            )  # type: ignore[list-item]
            continue
        task = page.tasks[0]
        tid = task.task_id
        if op == "move":
            await service.update(user, tid, TaskChanges(due=iso(timedelta(days=1, hours=next(hours)))))
        elif op == "remind":
            await service.update(
                user, tid, TaskChanges(reminders=[{"minutes_before": 10}, {"at": iso(timedelta(hours=20))}])
            )  # type: ignore[list-item]
        elif op == "complete":
            await service.complete(user, tid)
        elif op == "reopen":
            await service.reopen(user, tid)
        elif op == "delete":
            await service.delete(user, tid)
        elif op == "rename":
            await service.update(user, tid, TaskChanges(title=f"renamed {next(hours)}"))
        else:
            await service.add(
                user, NewTask(title="added", due=iso(timedelta(days=4)), reminders=[{"minutes_before": 60}])
            )  # type: ignore[list-item]


async def storm(rt: Runtime, user: str, seed: int, tried: Tried) -> int:
    """Deliver the user's task events to every task-events subscription, shuffled and repeated."""
    assert rt.delivery is not None
    events = await history_of(rt, user)
    subs = [s for s in rt.delivery.bus.subscriptions if s.topic == topology.TASK_EVENTS]
    rng = random.Random(seed)
    deliveries = [(sub, e) for sub in subs for e in events for _ in range(rng.randint(1, 4))]
    rng.shuffle(deliveries)
    for sub, event in deliveries:
        message = Message(id=event.event_id, topic=topology.TASK_EVENTS, data=event.model_dump(mode="json"))
        await sub.handler(message)
        tried.count("delivery")
    return len(deliveries)


async def storm_in_batches(rt: Runtime, user: str, seed: int, tried: Tried) -> int:
    """The storm as batches: the shuffled, repeated deliveries handed to each subscription's
    batch handler in random slices (a redelivered batch, batches out of order, duplicates within
    one batch), as the in-process bus and Dapr bulk subscribe hand them."""
    assert rt.delivery is not None
    events = await history_of(rt, user)
    subs = [s for s in rt.delivery.bus.subscriptions if s.topic == topology.TASK_EVENTS]
    rng = random.Random(seed)
    delivered = 0
    for sub in subs:
        messages = [
            Message(id=e.event_id, topic=topology.TASK_EVENTS, data=e.model_dump(mode="json"))
            for e in events
            for _ in range(rng.randint(1, 3))
        ]
        rng.shuffle(messages)
        while messages:
            size = rng.randint(1, 6)
            batch, messages = messages[:size], messages[size:]
            outcomes = await sub.handle_batch(batch)
            assert all(o.value == "SUCCESS" for o in outcomes), outcomes
            delivered += len(batch)
            tried.count("batch")
    return delivered


async def check_final_state(rt: Runtime, user: str) -> None:
    """Whatever the order, the workers end where the tasks are: reminders exactly as the tasks
    want them now, one audit entry per event, one occurrence per series and date."""
    assert rt.sql_engine is not None and rt.delivery is not None
    page, _ = await rt.service.list(user, ListRequest(status=Status.ALL, sort=SortField.CREATED, limit=200))
    wanted = {name: w.fire_at for task in page.tasks for name, w in wanted_reminders(task).items()}
    ledger = await _ledger(rt, user)
    assert ledger == wanted, (ledger, wanted)
    jobs = {
        j.name: j.due_at
        for j in await rt.delivery.jobs.pending("reminders")
        if j.name in wanted or j.data.get("user_id") == user
    }
    assert jobs == wanted, (jobs, wanted)
    events = await history_of(rt, user)
    async with rt.sql_engine.connect() as conn:
        audited = (
            (await conn.execute(sa.text("SELECT event_id FROM audit_events WHERE user_id = :u"), {"u": user}))
            .scalars()
            .all()
        )
    assert sorted(audited) == sorted(e.event_id for e in events)
    series = [(t.series_id, t.due_at) for t in page.tasks if t.series_id]
    assert len(series) == len(set(series)), series


async def _ledger(rt: Runtime, user: str) -> dict[str, datetime]:
    assert rt.sql_engine is not None
    async with rt.sql_engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text("SELECT job_name, fire_us FROM reminder_schedule WHERE user_id = :u"), {"u": user}
            )
        ).all()
    return {name: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us) for name, us in rows}


@fuzz(30)
@given(ops=OPS, seed=st.integers(0, 2**16))
async def test_redelivered_and_reordered_task_events_end_in_the_right_state(
    rt: Runtime, tried: Tried, ops: list[str], seed: int
) -> None:
    user = f"storm{next(USERS)}"
    await apply_ops(rt, user, ops)
    await storm(rt, user, seed, tried)
    assert rt.delivery is not None
    await rt.delivery.settle()  # the relay then delivers everything in order, as usual
    await check_final_state(rt, user)


@fuzz(15)
@given(ops=OPS, seed=st.integers(0, 2**16))
async def test_redelivered_and_reordered_batches_end_in_the_right_state(
    rt: Runtime, tried: Tried, ops: list[str], seed: int
) -> None:
    user = f"batch{next(USERS)}"
    await apply_ops(rt, user, ops)
    await storm_in_batches(rt, user, seed, tried)
    assert rt.delivery is not None
    await rt.delivery.settle()
    await check_final_state(rt, user)
    # And a whole batch delivered again after that changes nothing.
    before = await _ledger(rt, user)
    await storm_in_batches(rt, user, seed + 1, tried)
    await rt.delivery.settle()
    assert await _ledger(rt, user) == before
    await check_final_state(rt, user)


async def test_an_update_delivered_before_its_create_keeps_the_new_reminder_time(
    rt: Runtime, clock: ManualClock
) -> None:
    """Out of order: the `updated` event (reminder at 14:30) arrives before `created` (13:30).
    Acting on the stale snapshot rescheduled 13:30, and 14:30 was never sent."""
    assert rt.delivery is not None
    task = await rt.service.add(
        "alice", NewTask(title="call", due=iso(timedelta(hours=2)), reminders=[{"minutes_before": 30}])
    )  # type: ignore[list-item]
    await rt.service.update("alice", task.task_id, TaskChanges(due=iso(timedelta(hours=3))))
    created, updated = await history_of(rt, "alice")
    [reminders] = [s for s in rt.delivery.bus.subscriptions if s.name == "reminders-task-events"]
    for event in (updated, created):
        await reminders.handler(
            Message(id=event.event_id, topic=topology.TASK_EVENTS, data=event.model_dump(mode="json"))
        )
    await rt.delivery.settle()
    for hours in (1.6, 2.4, 2.6, 5):
        clock.set(T0 + timedelta(hours=hours))
        await rt.delivery.settle()
        await rt.delivery.cron.tick()
        await rt.delivery.settle()
    notes, _ = await rt.inbox.recent("alice") if rt.inbox else ([], 0)
    assert [(n.title, datetime.fromisoformat(n.data["remind_at"])) for n in notes] == [
        ("call", T0 + timedelta(hours=2, minutes=30))
    ]


# ---- clock jumps -----------------------------------------------------------------------------------


JUMPS = st.lists(st.integers(-180, 240).map(lambda m: timedelta(minutes=m)), min_size=3, max_size=10)


@fuzz(25)
@given(jumps=JUMPS, sweep=st.lists(st.booleans(), min_size=10, max_size=10))
async def test_clock_jumps_never_fire_a_reminder_twice_or_skip_one(
    rt: Runtime, clock: ManualClock, tried: Tried, jumps: list[timedelta], sweep: list[bool]
) -> None:
    """The clock jumps forward and back (NTP corrections, a suspended VM, DST-unaware hosts);
    the job loop and the sweeper run between jumps. In the end every reminder whose time came
    was sent exactly once, and none before its time."""
    assert rt.delivery is not None and rt.inbox is not None
    user = f"jump{next(USERS)}"
    base = clock.now()
    times = [timedelta(minutes=m) for m in (10, 45, 90, 150, 200)]
    for n, at in enumerate(times):
        await rt.service.add(user, NewTask(title=f"r{n}", reminders=[{"at": (base + at).isoformat()}]))  # type: ignore[list-item]
    await rt.delivery.settle()
    latest = base
    for jump, with_sweep in zip(jumps, sweep, strict=False):
        clock.set(clock.now() + jump)
        latest = max(latest, clock.now())
        await rt.delivery.settle()
        if with_sweep:
            await rt.delivery.cron.tick()
            await rt.delivery.settle()
        tried.count("jump back" if jump < timedelta(0) else "jump forward")
        notes, _ = await rt.inbox.recent(user, limit=50)
        sent = sorted(n.title for n in notes)
        due_by_now = {f"r{n}" for n, at in enumerate(times) if base + at <= latest}
        assert set(sent) <= due_by_now, (sent, due_by_now)  # nothing before its time (the latest time seen)
        assert len(sent) == len(set(sent)), sent  # nothing twice
    clock.set(base + timedelta(hours=6))  # the end of the day: every reminder is due
    await rt.delivery.settle()
    await rt.delivery.cron.tick()
    await rt.delivery.settle()
    notes, _ = await rt.inbox.recent(user, limit=50)
    assert sorted(n.title for n in notes) == [f"r{n}" for n in range(5)]
    clock.set(base)  # and back again: nothing fires a second time
    await rt.delivery.settle()
    await rt.delivery.cron.tick()
    await rt.delivery.settle()
    assert len((await rt.inbox.recent(user, limit=50))[0]) == 5
