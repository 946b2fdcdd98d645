"""The in-process bus and the outbox relay: ordering, retries, dead letters, and never losing an event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from doable.adapters.embedded.bus import InProcessBus, RetryPolicy
from doable.adapters.embedded.relay import OutboxRelay
from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from doable.domain.errors import Conflict, InvalidArgument, Unavailable
from doable.platform import topology
from doable.ports.messages import Message, Outcome, Subscription
from doable.usecases.inputs import NewTask

CLOCK = ManualClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def record(self, **fields: Any) -> None:
        self.records.append(fields)


def bus_with(sleeps: Sleeps | None = None, dead: DeadLetters | None = None, attempts: int = 4) -> InProcessBus:
    return InProcessBus(
        CLOCK, retry=RetryPolicy(attempts=attempts, first_delay=0.1), dead_letters=dead, sleep=sleeps or Sleeps()
    )


async def test_messages_of_one_key_arrive_in_order_while_keys_run_concurrently() -> None:
    bus = bus_with()
    seen: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def handler(message: Message) -> Outcome:
        if message.data["key"] == "slow" and message.data["n"] == 0:
            await gate.wait()  # the first "slow" message blocks only its own key
        seen.append((message.data["key"], message.data["n"]))
        return Outcome.SUCCESS

    bus.subscribe(Subscription(topic="t", handler=handler, name="s"))
    slow = [
        asyncio.create_task(bus.publish("t", {"key": "slow", "n": n}, key="slow", event_id=f"s{n}")) for n in range(3)
    ]
    await bus.publish("t", {"key": "fast", "n": 0}, key="fast", event_id="f0")
    assert seen == [("fast", 0)]
    gate.set()
    await asyncio.gather(*slow)
    assert seen == [("fast", 0), ("slow", 0), ("slow", 1), ("slow", 2)]


async def test_retry_with_backoff_then_success() -> None:
    sleeps = Sleeps()
    bus = bus_with(sleeps)
    answers = [Outcome.RETRY, Outcome.RETRY, Outcome.SUCCESS]

    async def handler(_: Message) -> Outcome:
        return answers.pop(0)

    bus.subscribe(Subscription(topic="t", handler=handler, name="s"))
    await bus.publish("t", {}, key="k", event_id="e")
    assert sleeps.delays == [0.1, 0.2]


async def test_exhausted_retries_and_drops_go_to_the_dead_letter_record() -> None:
    dead = DeadLetters()
    bus = bus_with(dead=dead, attempts=3)

    async def flaky(_: Message) -> Outcome:
        raise Conflict("a concurrent change won")  # (Unavailable waits for the backend instead)

    async def invalid(_: Message) -> Outcome:
        raise InvalidArgument("title", "must not be empty")

    bus.subscribe(Subscription(topic="a", handler=flaky, name="flaky"))
    bus.subscribe(Subscription(topic="b", handler=invalid, name="invalid"))
    await bus.publish("a", {"x": 1}, key="k", event_id="e1")
    await bus.publish("b", {"x": 2}, key="k", event_id="e2")
    assert [(r["subscription"], r["message_id"], r["attempts"]) for r in dead.records] == [
        ("flaky", "e1", 3),
        ("invalid", "e2", 1),
    ]
    assert "concurrent change" in dead.records[0]["reason"] and dead.records[1]["reason"].startswith("dropped")


async def test_a_handler_may_publish_to_its_own_lane_without_deadlock() -> None:
    bus = bus_with()
    got: list[int] = []

    async def handler(message: Message) -> Outcome:
        got.append(message.data["n"])
        if message.data["n"] < 3:
            await bus.publish("t", {"n": message.data["n"] + 1}, key="k", event_id=str(message.data["n"] + 1))
        return Outcome.SUCCESS

    bus.subscribe(Subscription(topic="t", handler=handler, name="s"))
    await asyncio.wait_for(bus.publish("t", {"n": 0}, key="k", event_id="0"), 2)
    await bus.idle()
    assert got == [0, 1, 2, 3]


async def test_each_subscriber_gets_its_own_copy_of_the_data() -> None:
    bus = bus_with()
    copies: list[dict[str, Any]] = []

    async def mutate(message: Message) -> Outcome:
        message.data["touched"] = True
        copies.append(message.data)
        return Outcome.SUCCESS

    bus.subscribe(Subscription(topic="t", handler=mutate, name="one"))
    bus.subscribe(Subscription(topic="t", handler=mutate, name="two"))
    data = {"n": 1}
    await bus.publish("t", data, key="k", event_id="e")
    assert data == {"n": 1} and copies[0] is not copies[1]


async def test_a_closed_bus_refuses_to_publish() -> None:
    bus = bus_with()
    await bus.aclose()
    try:
        await bus.publish("t", {}, key="k", event_id="e")
    except Unavailable:
        return
    raise AssertionError("publish on a closed bus must raise Unavailable")


class FlakyPublisher:
    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, str, str]] = []

    async def publish(
        self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None
    ) -> None:
        if self.down:
            raise Unavailable("broker unreachable")
        self.sent.append((topic, key, data["event_type"]))


async def test_a_broker_outage_never_fails_the_write_nor_loses_the_event(rt: Runtime) -> None:
    publisher = FlakyPublisher()
    relay = OutboxRelay(rt.outbox, publisher)
    task = await rt.service.add("alice", NewTask(title="Written while the broker is down"))
    await rt.service.complete("alice", task.task_id)
    result = await relay.drain()
    assert (result.published, result.failed) == (0, 1)  # the user's later event waits behind the first
    [first, second] = await rt.outbox.pending()
    assert (first.attempts, second.attempts) == (1, 0)
    publisher.down = False
    assert (await relay.drain()).published == 2
    assert publisher.sent == [
        (topology.TASK_EVENTS, "alice", "created"),
        (topology.TASK_UPDATES, "alice", "created"),
        (topology.TASK_EVENTS, "alice", "completed"),
        (topology.TASK_UPDATES, "alice", "completed"),
    ]
    assert await rt.outbox.depth() == 0


async def test_a_commit_wakes_the_relay_at_once(rt: Runtime) -> None:
    assert rt.delivery is not None
    seen = asyncio.Event()

    async def on_update(_: Message) -> Outcome:
        seen.set()
        return Outcome.SUCCESS

    rt.delivery.bus.subscribe(Subscription(topic=topology.TASK_UPDATES, handler=on_update, name="test-updates"))
    relay = asyncio.create_task(rt.delivery.relay.run())
    try:
        await asyncio.sleep(0.05)  # the relay is now waiting for its (2 s) poll
        await rt.service.add("alice", NewTask(title="Nudge"))
        await asyncio.wait_for(seen.wait(), 1.0)
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
