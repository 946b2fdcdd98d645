"""The Dapr outbox relay's bookkeeping (doable/adapters/dapr/outbox.py): a user's events are
published without waiting for the advances of the earlier ones, each exactly once while those
advances are still on their way; a caught-up user leaves its dirty shard lazily, and a write
that races that leave is never stranded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.keys import meta_key
from doable.adapters.dapr.operations import Delete, Upsert
from doable.adapters.dapr.outbox import DaprOutbox
from doable.bootstrap.dapr import DaprParts, connect
from doable.domain.clock import SystemClock
from doable.platform import topology
from doable.platform.settings import Settings
from doable.platform.topology import STATE_STORE
from doable.usecases.inputs import NewTask
from doable.usecases.service import TaskService
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import eventually


class Intercepted:
    """The relay's sidecar client, with a hook run before each state transaction it sends."""

    def __init__(self, client: DaprClient) -> None:
        self._client = client
        self.before: Callable[[list[Upsert | Delete]], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def transact(self, store: str, ops: list[Upsert | Delete]) -> None:
        if self.before is not None:
            await self.before(ops)
        await self._client.transact(store, ops)


@pytest.fixture
async def parts(dapr_settings: Settings, sidecar_url: str) -> AsyncIterator[DaprParts]:
    built = await connect(dapr_settings.model_copy(update={"dapr_http_endpoint": sidecar_url}))
    try:
        yield built
    finally:
        await built.client.aclose()


def titles(double: DaprDouble) -> list[str]:
    return [e["data"]["task_data"]["title"] for e in double.published(topology.TASK_EVENTS)]


async def test_a_write_is_published_while_the_earlier_advance_waits_and_nothing_twice(
    parts: DaprParts, double: DaprDouble
) -> None:
    service = TaskService(parts.uow, SystemClock())
    client = Intercepted(parts.client)
    relay = DaprOutbox(client, STATE_STORE, parts.publisher, poll_seconds=0.05)  # type: ignore[arg-type]
    relay.relay_id = parts.outbox.relay_id  # the relay the writes name as their publisher
    advancing = asyncio.Event()

    async def hold_advances(ops: list[Upsert | Delete]) -> None:
        if any(isinstance(op, Upsert) and op.key == meta_key("alice") for op in ops):
            await advancing.wait()

    client.before = hold_advances
    await relay.start()
    try:
        await service.add("alice", NewTask(title="first"))
        relay.nudge()
        await eventually(lambda: titles(double) == ["first"], within=5)
        # The first event's advance is held back: the next write still goes out, and the first
        # is not published again meanwhile.
        await service.add("alice", NewTask(title="second"))
        relay.nudge()
        await eventually(lambda: titles(double) == ["first", "second"], within=5)
        await asyncio.sleep(0.3)  # a few more rounds
        assert titles(double) == ["first", "second"]
        assert await relay.depth() == 2  # neither advance has landed
        advancing.set()
        for _ in range(100):
            if not await relay.depth():
                break
            await asyncio.sleep(0.05)
        assert await relay.depth() == 0
        assert titles(double) == ["first", "second"]
    finally:
        advancing.set()
        await relay.stop()


async def test_a_caught_up_user_leaves_its_shard_and_a_new_write_joins_it_again(
    parts: DaprParts, double: DaprDouble
) -> None:
    service = TaskService(parts.uow, SystemClock())
    relay = DaprOutbox(parts.client, STATE_STORE, parts.publisher, leave_after_seconds=0)
    await service.add("alice", NewTask(title="one"))
    assert await relay.drain() == 1
    assert await relay.dirty_users() == ["alice"]  # caught up, but it leaves on a later round
    assert await relay.drain() == 0
    assert await relay.dirty_users() == []
    await service.add("alice", NewTask(title="two"))
    assert await relay.dirty_users() == ["alice"]
    assert await relay.drain() == 1
    assert titles(double) == ["one", "two"]


async def test_a_write_that_races_the_leave_keeps_the_user_in_its_shard(parts: DaprParts, double: DaprDouble) -> None:
    service = TaskService(parts.uow, SystemClock())
    client = Intercepted(parts.client)
    relay = DaprOutbox(client, STATE_STORE, parts.publisher, leave_after_seconds=0)  # type: ignore[arg-type]
    await service.add("alice", NewTask(title="one"))
    assert await relay.drain() == 1

    async def write_first(ops: list[Upsert | Delete]) -> None:
        if any(op.key.startswith("outbox-dirty:") for op in ops):
            client.before = None
            # Alice writes after the relay read her meta and her shard: she is in the shard, so
            # her write does not touch it, and the relay's leave must not take her out.
            await service.add("alice", NewTask(title="two"))

    client.before = write_first
    assert await relay.drain() == 0  # the leave conflicted
    assert client.before is None, "the relay never tried to leave"
    assert await relay.dirty_users() == ["alice"]
    assert await relay.drain() == 1
    assert titles(double) == ["one", "two"]
