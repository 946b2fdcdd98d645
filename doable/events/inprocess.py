"""The in-process event bus: embedded mode's pub/sub, with the delivery guarantees handlers
are written for in Dapr mode.

- Per-key ordering: messages with the same key reach a subscription one at a time, in publish
  order (Kafka's partition key in Dapr mode); different keys and subscriptions run concurrently.
- Retries: RETRY or an exception is retried with exponential backoff; DROP, or RETRY past the
  bound, goes to the dead-letter sink (Dapr: the dead-letter topic). Unavailable (the database is
  down) uses up no attempt: the lane waits, backing off, until the backend is back.
- Durable hand-off: `publish` returns once every subscription has settled the message (handled,
  dropped or dead-lettered). The outbox relay marks events published only after that, so a
  crash before handlers ran re-publishes from the outbox instead of losing the event.
- Isolation: each subscription gets its own JSON copy of the data, as from a broker.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from doable.domain.clock import Clock
from doable.domain.errors import Unavailable
from doable.messaging import DeadLetterSink, Message, Outcome, Subscription, outcome_for
from doable.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, EVENTS_PUBLISHED

log = structlog.get_logger("doable.events")

Sleep = Callable[[float], Awaitable[None]]
Lane = tuple[str, str]  # (subscription name, key)

# The lanes whose handlers are running up the current call chain. A handler that publishes to a
# lane it is itself blocking must not wait for that lane, or the two would wait for each other.
_blocking: contextvars.ContextVar[frozenset[Lane]] = contextvars.ContextVar("doable_bus_blocking", default=frozenset())


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.1
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 1)))


@dataclass
class _Delivery:
    message: Message
    key: str
    chain: frozenset[Lane]
    settled: asyncio.Future[None]


@dataclass
class _LaneState:
    queue: deque[_Delivery] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class InProcessBus:
    """EventPublisher for embedded mode, and the dispatcher of its subscriptions."""

    def __init__(
        self,
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        dead_letters: DeadLetterSink | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._dead_letters = dead_letters
        self._sleep = sleep
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._names: set[str] = set()
        self._lanes: dict[Lane, _LaneState] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def subscribe(self, subscription: Subscription) -> None:
        if subscription.name in self._names:
            raise ValueError(f"a subscription named {subscription.name!r} already exists")
        self._names.add(subscription.name)
        self._subscriptions.setdefault(subscription.topic, []).append(subscription)

    @property
    def subscriptions(self) -> list[Subscription]:
        return [s for subs in self._subscriptions.values() for s in subs]

    async def publish(
        self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None
    ) -> None:
        if self._closed:
            raise Unavailable("the event bus is shut down")
        try:
            payload = json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event data for {topic} must be JSON-serializable") from exc
        EVENTS_PUBLISHED.labels(topic=topic).inc()
        chain = _blocking.get()
        waits: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        # Enqueue on every lane before the first await, so publish order is lane order.
        for sub in self._subscriptions.get(topic, ()):
            message = Message(id=event_id, topic=topic, data=json.loads(payload), trace_id=trace_id)
            delivery = _Delivery(message=message, key=key, chain=chain, settled=loop.create_future())
            self._enqueue(sub, delivery)
            if (sub.name, key) not in chain:
                waits.append(delivery.settled)
        if waits:
            await asyncio.gather(*waits)

    async def idle(self) -> None:
        """Wait until no lane has work (tests' "run until idle")."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop dispatching; publishers still waiting get Unavailable-like cancellation."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            for delivery in lane.queue:
                if not delivery.settled.done():
                    delivery.settled.cancel()
        self._lanes.clear()
        self._idle.set()

    # ---- dispatch -----------------------------------------------------------------------

    def _enqueue(self, sub: Subscription, delivery: _Delivery) -> None:
        lane_id = (sub.name, delivery.key)
        lane = self._lanes.get(lane_id)
        if lane is None:
            lane = self._lanes[lane_id] = _LaneState()
        lane.queue.append(delivery)
        self._idle.clear()
        if lane.task is None:
            # A fresh context: the lane must not inherit the first publisher's request variables.
            lane.task = asyncio.get_running_loop().create_task(
                self._drain_lane(sub, lane_id, lane), context=contextvars.Context()
            )

    async def _drain_lane(self, sub: Subscription, lane_id: Lane, lane: _LaneState) -> None:
        while lane.queue:
            delivery = lane.queue[0]
            try:
                await self._deliver(sub, delivery)
            finally:
                lane.queue.popleft()
                if not delivery.settled.done():
                    delivery.settled.set_result(None)
        # No await between the empty check and removal: a publish cannot slip in between.
        del self._lanes[lane_id]
        if not self._lanes:
            self._idle.set()

    async def _deliver(self, sub: Subscription, delivery: _Delivery) -> None:
        message = delivery.message
        _blocking.set(delivery.chain | {(sub.name, delivery.key)})
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(subscription=sub.name, topic=message.topic, message_id=message.id)
        if message.trace_id:
            structlog.contextvars.bind_contextvars(trace_id=message.trace_id)
        reason = ""
        attempt = outages = 0
        while attempt < self._retry.attempts:
            attempt += 1
            try:
                outcome = await sub.handler(message)
                reason = f"handler answered {outcome.value}"
            except Unavailable as exc:
                # The database is down: the handler cannot succeed, nor a dead letter be recorded,
                # until it is back. Wait for it (backing off) instead of using up the attempts and
                # giving the event up after seconds of an outage; shutdown cancels the wait, and the
                # outbox then delivers the event again on the next start.
                outages += 1
                attempt -= 1
                log.warning("events.backend_unavailable", outages=outages, error=str(exc))
                EVENTS_CONSUMED.labels(topic=message.topic, outcome="retry").inc()
                await self._sleep(self._retry.delay(min(outages, 16)))
                continue
            except Exception as exc:
                outcome = outcome_for(exc)
                reason = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "events.handler_failed", attempt=attempt, outcome=outcome.value, error=reason, exc_info=True
                )
            EVENTS_CONSUMED.labels(topic=message.topic, outcome=outcome.value.lower()).inc()
            if outcome is Outcome.SUCCESS:
                return
            if outcome is Outcome.DROP:
                await self._dead_letter(sub, delivery, f"dropped: {reason}", attempt)
                return
            if attempt < self._retry.attempts:
                await self._sleep(self._retry.delay(attempt))
        await self._dead_letter(
            sub, delivery, f"gave up after {self._retry.attempts} attempts: {reason}", self._retry.attempts
        )

    async def _dead_letter(self, sub: Subscription, delivery: _Delivery, reason: str, attempts: int) -> None:
        message = delivery.message
        EVENTS_DEAD_LETTERED.labels(topic=message.topic, subscription=sub.name).inc()
        log.error("events.dead_lettered", reason=reason, attempts=attempts)
        if self._dead_letters is None:
            return
        try:
            await self._dead_letters.record(
                subscription=sub.name,
                topic=message.topic,
                message_id=message.id,
                key=delivery.key,
                data=message.data,
                reason=reason,
                attempts=attempts,
                at=self._clock.now(),
            )
        except Exception:
            # The log line above is then the only record; never let it stop the lane.
            log.exception("events.dead_letter_not_recorded")
