"""Redelivery storms, out-of-order delivery and clock jumps in Dapr mode, through the sidecar
double (tests/dapr_double, over PostgreSQL): the properties of test_redelivery_and_clock.py,
against the workers as `doable worker NAME` builds them (their records in Dapr state, reminders
as Jobs API jobs, the sweeper behind its cron binding) and the API as `doable serve` does.

The API runtime and the four worker apps run in-process, each on its own sidecar of one double,
as in tests/dapr_mode. One clock drives the API, the workers and the double's scheduler, and it
jumps back as well as forward here. The API's outbox relay runs by hand (`settle`), so a storm
reaches the workers before the relay delivers the same events in order, as in the embedded test.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from doable.adapters.dapr.audit import DaprAuditLog
from doable.adapters.dapr.messaging import traceparent
from doable.adapters.dapr.reminders import PENDING_SHARDS, DaprReminderLedger, pending_key
from doable.bootstrap import Runtime
from doable.bootstrap.dapr import DaprParts, build_runtime, worker_transport
from doable.bootstrap.workers import build_worker_app
from doable.domain.events import TaskEvent
from doable.domain.query import SortField, Status, micros
from doable.domain.reminders import job_name, wanted_reminders
from doable.platform import topology
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from doable.web.app import create_app
from tests.conftest import PG_DSN
from tests.dapr_double import DaprDouble, ManualClock, cloudevents
from tests.dapr_double.manifests import render_chart
from tests.dapr_double.resiliency import SystemTimer
from tests.dapr_mode.conftest import APP_TOKEN, CHART_VALUES, DAPR_TOKEN, SECRETS, sidecar_client
from tests.reliability.fuzz import Tried, fuzz
from tests.reliability.test_redelivery_and_clock import JUMPS, OPS, T0, USERS, apply_ops, history_of, iso

pytestmark = pytest.mark.postgres

REMINDERS_APP = topology.WORKER_APP_IDS["reminders"]


class JumpingClock(ManualClock):
    """The double's manual clock (the scheduler fires on `double.tick()`), allowed to jump back:
    an NTP correction, a VM restored from a snapshot."""

    def jump(self, to: datetime) -> None:
        self._now = to


@dataclass
class Stack:
    """The API and the four workers, each on its own sidecar of one double, on one clock."""

    double: DaprDouble
    runtime: Runtime
    clock: JumpingClock
    workers: dict[str, FastAPI] = field(default_factory=dict)

    @property
    def parts(self) -> DaprParts:
        assert isinstance(self.runtime.dapr, DaprParts)
        return self.runtime.dapr

    def task_event_apps(self) -> list[str]:
        """The app-ids subscribed to task-events (each is its own consumer group)."""
        return [
            topology.WORKER_APP_IDS[name]
            for name, app in self.workers.items()
            if any(s.topic == topology.TASK_EVENTS for s in app.state.worker.subscriptions)
        ]


@pytest.fixture
async def stack(settings: Settings, pg_schema: str) -> AsyncIterator[Stack]:
    clock = JumpingClock(T0)
    dapr_settings = settings.model_copy(  # as tests/dapr_mode/conftest.py's dapr_settings
        update={
            "runtime": "dapr",
            "jwt_secret": None,
            "app_api_token": SecretStr(APP_TOKEN),
            "dapr_api_token": SecretStr(DAPR_TOKEN),
            "dapr_startup_timeout": 5.0,
            # The consumers' processed-message records live this long (state TTL, on the
            # double's clock): jumping past it makes every handler see every event again.
            "processed_ttl_hours": 1,
        }
    )
    async with DaprDouble(
        app_id=topology.API_APP_ID,
        dsn=PG_DSN,
        schema=pg_schema,
        # The shipped Components, Configuration and Resiliency, as in tests/dapr_mode; retry waits
        # and breaker periods 100 times shorter.
        manifests=render_chart(CHART_VALUES),
        resiliency_timer=SystemTimer(scale=0.01),
        secrets=SECRETS,
        api_token=DAPR_TOKEN,
        app_token=APP_TOKEN,
        clock=clock,
        redelivery_backoff=0.01,
        max_delivery_attempts=5,
        drop_schema_on_close=False,  # pg_schema drops it
    ) as double:
        # The API as `doable serve` builds it, minus the relay loop: `settle` relays by hand.
        runtime = await build_runtime(dapr_settings, clock=clock, client=sidecar_client(double, topology.API_APP_ID))
        closers = [runtime.aclose]
        try:
            await double.register_app(topology.API_APP_ID, asgi_app=create_app(runtime))
            built = Stack(double=double, runtime=runtime, clock=clock)
            for name, app_id in topology.WORKER_APP_IDS.items():
                transport = await worker_transport(dapr_settings, name, client=sidecar_client(double, app_id))
                if transport.aclose is not None:
                    closers.append(transport.aclose)
                built.workers[name] = build_worker_app(dapr_settings, name, transport, clock=clock)
                await double.register_app(app_id, asgi_app=built.workers[name])
            yield built
        finally:
            for close in reversed(closers):
                await close()


async def settle(stack: Stack, *, within: float = 30.0) -> None:
    """Relay the outbox in order and wait until every delivery settled (handlers publish more:
    the recurrence worker's next occurrences, the reminders worker's Reminder Events)."""
    with anyio.fail_after(within):
        while True:
            published = await stack.parts.outbox.drain()
            await stack.double.wait_idle(within)
            if not published and not await stack.runtime.outbox.depth():
                return


def envelope(event: TaskEvent, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The CloudEvent the sidecar makes of the relay's publish of `event` (DaprPublisher: the
    event id as CloudEvent id, keyed by user), and the publish metadata."""
    data = event.model_dump(mode="json")
    metadata = {
        "partitionKey": event.user_id,
        "cloudevent.id": event.event_id,
        "cloudevent.type": f"doable.{topology.TASK_EVENTS}.{data['event_type']}",
    }
    made = cloudevents.new_envelope(
        source=topology.API_APP_ID,
        topic=topology.TASK_EVENTS,
        pubsub=topology.PUBSUB,
        content_type="application/json",
        data=json.dumps(data).encode(),
        traceparent=cloudevents.child_traceparent(traceparent(event.trace_id)),
        tracestate="",
        metadata=metadata,
        now=now,
    )
    return cloudevents.encode(made), metadata


async def redeliver(double: DaprDouble, app_id: str, event: TaskEvent) -> None:
    """Hand `event` to one consumer group again, through the double's broker and delivery loop
    (retries, dead letters, the app's subscription route). The double's public publish fans out
    to every subscriber, and a redelivery comes to one consumer group at a time, so this puts
    the message on the broker for `app_id` alone. Keyed by user: each app gets its messages in
    the order they were put here, one after the other, while the apps run side by side."""
    data, metadata = envelope(event, double.clock.now())
    pubsub = double._pubsub
    await pubsub._broker.append(
        pubsub=topology.PUBSUB,
        topic=topology.TASK_EVENTS,
        data=data,
        metadata=metadata,
        raw=False,
        subscribers=[app_id],
        now=double.clock.now(),
        not_before=datetime.now(UTC),
    )
    pubsub.deliverer.wake()


async def storm(stack: Stack, user: str, seed: int, tried: Tried) -> int:
    """Deliver the user's task events to every task-events worker app, shuffled and repeated."""
    events = await history_of(stack.runtime, user)
    rng = random.Random(seed)
    deliveries = [(app, e) for app in stack.task_event_apps() for e in events for _ in range(rng.randint(1, 4))]
    rng.shuffle(deliveries)
    for app_id, event in deliveries:
        await redeliver(stack.double, app_id, event)
        tried.count("delivery")
    await stack.double.wait_idle(60)
    return len(deliveries)


def user_jobs_prefix(user: str) -> str:
    """The job-name prefix of one user's reminders (`rem-{user hash}-`)."""
    return job_name(user, 0, "x").removesuffix("0-x")


async def ledger_of(stack: Stack, user: str, task_ids: set[int]) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """The reminders worker's ledger for `user`: its reminders by task, and its pending index."""
    client = stack.parts.client
    ledger = DaprReminderLedger(client, topology.STATE_STORE)
    reminders: dict[str, datetime] = {}
    for task_id in task_ids:
        reminders.update({name: r.fire_at for name, r in (await ledger.for_task(user, task_id)).items()})
    shards = await client.get_bulk(topology.STATE_STORE, [pending_key(n) for n in range(PENDING_SHARDS)])
    prefix = user_jobs_prefix(user)
    pending = {
        job: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(fire_us))
        for item in shards.values()
        for job, fire_us in item.value.get("jobs", {}).items()
        if job.startswith(prefix)
    }
    return reminders, pending


async def check_final_state(stack: Stack, user: str) -> None:
    """Whatever the order, the workers end where the tasks are: reminders (ledger, pending index,
    Jobs API) exactly as the tasks want them now, one audit entry per event, one occurrence per
    series and date, nothing dead-lettered."""
    rt, double = stack.runtime, stack.double
    page, _ = await rt.service.list(user, ListRequest(status=Status.ALL, sort=SortField.CREATED, limit=200))
    wanted = {name: w.fire_at for task in page.tasks for name, w in wanted_reminders(task).items()}
    events = await history_of(rt, user)
    ledger, pending = await ledger_of(stack, user, {e.task_id for e in events})
    assert ledger == wanted, (ledger, wanted)
    assert pending == wanted, (pending, wanted)
    prefix = user_jobs_prefix(user)
    jobs = {j.name: j for j in await double.jobs(REMINDERS_APP) if j.name.startswith(prefix)}
    assert {name: j.next_fire_at for name, j in jobs.items()} == wanted, (jobs, wanted)
    assert all(micros(datetime.fromisoformat(j.data["fire_at"])) == micros(wanted[n]) for n, j in jobs.items())
    audited = await DaprAuditLog(stack.parts.client, topology.STATE_STORE).history(
        user, task_id=None, limit=1000, before_id=None
    )
    assert sorted(a.event_id for a in audited) == sorted(e.event_id for e in events)
    series = [(t.series_id, t.due_at) for t in page.tasks if t.series_id]
    assert len(series) == len(set(series)), series
    dead = [e for e in double.published(topology.DEAD_LETTER) if (e.get("data") or {}).get("user_id") == user]
    assert dead == [], dead
    assert not {"dropped", "dead_lettered", "failed"} & set(await double.delivery_statuses())


PROCESSED_TTL = timedelta(hours=1, minutes=1)  # past the stack's processed_ttl_hours


@fuzz(12)
@given(ops=OPS, seed=st.integers(0, 2**16), forget=st.booleans())
async def test_redelivered_and_reordered_task_events_end_in_the_right_state(
    stack: Stack, tried: Tried, ops: list[str], seed: int, forget: bool
) -> None:
    """`forget`: the storm comes again after the consumers' processed-message records expired
    (a redelivery later than the deduplication window), so every handler runs again on every
    event, in another order: the handlers themselves must be idempotent, not only the dedupe."""
    user = f"dstorm{next(USERS)}"
    await apply_ops(stack.runtime, user, ops)
    await storm(stack, user, seed, tried)
    if forget:
        stack.clock.jump(T0 + PROCESSED_TTL)
        await storm(stack, user, seed + 1, tried)
        tried.count("storm after the dedupe window")
    await settle(stack)  # then the relay delivers everything in order, as usual
    await check_final_state(stack, user)
    stack.clock.jump(T0)


async def inbox(stack: Stack, user: str) -> list[tuple[str, datetime]]:
    assert stack.runtime.inbox is not None
    notes, _ = await stack.runtime.inbox.recent(user, limit=50)
    return [(n.title, datetime.fromisoformat(n.data["remind_at"])) for n in notes]


def reminder_events(stack: Stack, user: str) -> list[dict[str, Any]]:
    """The Reminder Events the reminders worker published for `user` (each firing's)."""
    return [e["data"] for e in stack.double.published(topology.REMINDERS) if e["data"]["user_id"] == user]


async def fire_and_sweep(stack: Stack, *, fire: bool = True, sweep: bool = True) -> None:
    """The scheduler fires what is due by its clock (unless it lags), then the sweeper's cron
    binding is triggered (or not)."""
    if fire:
        await stack.double.tick()
        await settle(stack)
    if sweep:
        answer = await stack.double.trigger_binding(REMINDERS_APP, topology.REMINDER_SWEEP_BINDING)
        assert answer.status_code == 200, answer.text
        await settle(stack)


async def test_an_update_delivered_before_its_create_keeps_the_new_reminder_time(stack: Stack) -> None:
    """Out of order: the `updated` event (reminder at 14:30) reaches the reminders worker before
    `created` (13:30); only 14:30 is sent."""
    rt = stack.runtime
    new = NewTask(title="call", due=iso(timedelta(hours=2)), reminders=[{"minutes_before": 30}])  # type: ignore[list-item]
    task = await rt.service.add("alice", new)
    await rt.service.update("alice", task.task_id, TaskChanges(due=iso(timedelta(hours=3))))
    created, updated = await history_of(rt, "alice")
    for event in (updated, created):
        await redeliver(stack.double, REMINDERS_APP, event)
    await stack.double.wait_idle(30)
    await settle(stack)
    for hours in (1.6, 2.4, 2.6, 5):
        stack.clock.jump(T0 + timedelta(hours=hours))
        await fire_and_sweep(stack)
    assert await inbox(stack, "alice") == [("call", T0 + timedelta(hours=2, minutes=30))]
    assert len(reminder_events(stack, "alice")) == 1


@fuzz(10)
@given(
    jumps=JUMPS,
    fire=st.lists(st.booleans(), min_size=10, max_size=10),
    sweep=st.lists(st.booleans(), min_size=10, max_size=10),
    storm_after=st.integers(0, 9),
)
async def test_clock_jumps_never_fire_a_reminder_twice_or_skip_one(
    stack: Stack,
    tried: Tried,
    jumps: list[timedelta],
    fire: list[bool],
    sweep: list[bool],
    storm_after: int,
) -> None:
    """The clock of the API, the workers and the scheduler jumps forward and back; between jumps
    the scheduler fires due jobs (or lags, so the sweeper gets there first and the job fires
    later) and the sweeper's binding is triggered (or not). After one of the jumps the task
    events come again (a storm, maybe past the dedupe window and after reminders were sent).
    Every reminder whose time came is sent exactly once in the end, and none before its time."""
    rt, clock = stack.runtime, stack.clock
    assert rt.inbox is not None
    user = f"djump{next(USERS)}"
    base = clock.now()
    times = [timedelta(minutes=m) for m in (10, 45, 90, 150, 200)]
    for n, at in enumerate(times):
        new = NewTask(title=f"r{n}", reminders=[{"at": (base + at).isoformat()}])  # type: ignore[list-item]
        await rt.service.add(user, new)
    await settle(stack)
    latest = base
    for n, (jump, with_fire, with_sweep) in enumerate(zip(jumps, fire, sweep, strict=False)):
        clock.jump(clock.now() + jump)
        latest = max(latest, clock.now())
        await fire_and_sweep(stack, fire=with_fire, sweep=with_sweep)
        if n == storm_after:
            await storm(stack, user, n, tried)
            await fire_and_sweep(stack, fire=with_fire, sweep=with_sweep)
        tried.count("jump back" if jump < timedelta(0) else "jump forward")
        sent = sorted(title for title, _ in await inbox(stack, user))
        due_by_now = {f"r{n}" for n, at in enumerate(times) if base + at <= latest}
        assert set(sent) <= due_by_now, (sent, due_by_now)  # nothing before its time (the latest time seen)
        assert len(sent) == len(set(sent)), sent  # nothing twice
    clock.jump(base + timedelta(hours=6))  # the end of the day: every reminder is due
    await fire_and_sweep(stack)
    assert sorted(title for title, _ in await inbox(stack, user)) == [f"r{n}" for n in range(5)]
    clock.jump(base)  # and back again: nothing fires a second time
    await fire_and_sweep(stack)
    assert len(await inbox(stack, user)) == 5
    published = [e["event_id"] for e in reminder_events(stack, user)]
    assert len(published) == len(set(published)) == 5, published  # each firing published once
    assert await stack.double.jobs(REMINDERS_APP) == []  # every one-shot job fired and ended
