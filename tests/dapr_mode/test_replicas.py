"""Two API replicas (the chart's default), each with its own outbox relay over one state store.

The replica that wrote a user's events publishes them; the other takes over only when they stand
still (doable/adapters/dapr/outbox.py). Delivery stays at least once (a hand-over can publish an
event twice; consumers deduplicate on the event id). What must hold for users: no event is lost,
and per user the first copy of each event reaches the broker in the order the writes happened
(the order the workers and the live streams rely on). And a replica that dies with events
pending does not strand them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from doable.adapters.dapr.outbox import DaprOutbox
from doable.bootstrap import Runtime, build
from doable.bootstrap.dapr import connect
from doable.domain.clock import SystemClock
from doable.platform import topology
from doable.platform.settings import Settings
from doable.platform.topology import STATE_STORE
from doable.usecases.inputs import NewTask, TaskChanges
from doable.usecases.service import TaskService
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import eventually
from tests.reliability.fuzz import record

USERS = 6
WRITES = 12  # per user, alternating between the replicas
GAP = 0.05  # between one user's writes (a person is slower; the relays must not need it)


@pytest.fixture
async def replicas(dapr_settings: Settings, sidecar_url: str) -> AsyncIterator[list[Runtime]]:
    settings = dapr_settings.model_copy(update={"dapr_http_endpoint": sidecar_url, "outbox_poll_seconds": 0.05})
    built = [await build(settings), await build(settings)]
    for rt in built:
        await rt.dapr.outbox.start()  # type: ignore[union-attr]  # as the app's lifespan does
    try:
        yield built
    finally:
        for rt in built:
            await rt.aclose()


async def test_two_relays_lose_no_event_and_keep_each_users_order(replicas: list[Runtime], double: DaprDouble) -> None:
    async def writer(user: str) -> None:
        for n in range(WRITES):
            service = replicas[n % 2].service
            if n == 0:
                await service.add(user, NewTask(title="v0"))
            else:
                await service.update(user, 1, TaskChanges(title=f"v{n}"))
            await asyncio.sleep(GAP)

    await asyncio.gather(*(writer(f"user-{u}") for u in range(USERS)))
    for _ in range(200):
        if not any([await rt.outbox.depth() for rt in replicas]):
            break
        await asyncio.sleep(0.05)
    await double.wait_idle()

    published = [m["data"] for m in double.published(topology.TASK_EVENTS)]
    duplicates = 0
    for u in range(USERS):
        user = f"user-{u}"
        written = [e.event_id for e in reversed(await replicas[0].outbox.history(user, limit=100))]
        assert len(written) == WRITES
        copies = [d["event_id"] for d in published if d["user_id"] == user]
        first_seen = list(dict.fromkeys(copies))
        assert first_seen == written, user  # none lost, none out of order
        duplicates += len(copies) - len(first_seen)
    record("test_replicas::two_relays", users=USERS, events=USERS * WRITES, duplicate_copies=duplicates, lost=0)


async def test_a_replica_takes_over_the_events_another_one_left_behind(
    dapr_settings: Settings, sidecar_url: str, double: DaprDouble
) -> None:
    settings = dapr_settings.model_copy(update={"dapr_http_endpoint": sidecar_url})
    dead, alive = await connect(settings), await connect(settings)
    try:
        # The first replica commits a write and dies before its relay published it.
        await TaskService(dead.uow, SystemClock()).add("alice", NewTask(title="Left behind"))
        assert not double.published(topology.TASK_EVENTS)
        survivor = DaprOutbox(alive.client, STATE_STORE, alive.publisher, poll_seconds=0.05, handoff_seconds=0.3)
        assert await survivor._drain(100, everyone=False) == (0, 0)  # not its own: the writer may still be at it
        await survivor.start()
        await eventually(lambda: bool(double.published(topology.TASK_EVENTS)), within=10)
        for _ in range(100):  # published, then the tail advances
            if not await survivor.depth():
                break
            await asyncio.sleep(0.05)
        await survivor.stop()
        [event] = double.published(topology.TASK_EVENTS)
        assert (event["data"]["event_type"], event["data"]["task_data"]["title"]) == ("created", "Left behind")
        assert await survivor.depth() == 0
    finally:
        await dead.client.aclose()
        await alive.client.aclose()
