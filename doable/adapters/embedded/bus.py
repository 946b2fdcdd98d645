"""The in-process event bus: embedded mode's pub/sub, with the delivery guarantees handlers
are written for in Dapr mode.

- Per-key order: messages with the same key (a lane: subscription and key) reach a subscription
  in publish order, one batch at a time (Kafka's partition key in Dapr mode); different keys
  and subscriptions move independently.
- Batches: a batch-first subscription's handler is called with what its lanes have ready,
  combined (up to its `max_batch`; while a call runs, the next batch grows), at most
  `concurrency` calls at a time per subscription (4), and settles them in one transaction. A
  single-message handler is called by each lane on its own, once per message
  (`messaging.one_by_one`), so a slow message of one key never holds up another key.
- Retries, per message: a message that answers RETRY (or whose handler raises) is retried with
  exponential backoff together with the messages after it on its lane (so per-key order holds;
  for those that had succeeded it is a redelivery), and only it uses up an attempt; other keys
  go on meanwhile. DROP, or RETRY past the bound, sends that message alone to the dead-letter
  sink (Dapr: the dead-letter topic). When a batch handler raises, each lane hands its messages
  again one at a time, alone, so one bad message never takes its batch with it. Unavailable (the
  database is down) uses up no attempt: the lanes wait, backing off, until the backend is back.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
import structlog

from doable.domain.clock import Clock
from doable.domain.errors import Unavailable
from doable.platform.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, EVENTS_PUBLISHED
from doable.ports import DeadLetterSink
from doable.ports.messages import Message, Outcome, Outgoing, Subscription, outcome_for

log = structlog.get_logger("doable.events")

Sleep = Callable[[float], Awaitable[None]]
Lane = tuple[str, str]  # (subscription name, key)

# The subscriptions whose handlers are running up the current call chain. A handler that
# publishes to a subscription it is itself blocking (one handler call at a time per subscription)
# must not wait for it, or the two would wait for each other. (No topology cycle between two
# subscriptions exists: task-events → workers, reminders → notifications → live.)
_blocking: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("doable_bus_blocking", default=frozenset())


class _BatchFailed(Exception):
    """A combined batch raised: each lane retries its messages alone to find the bad one."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


@dataclass
class _Request:
    lane: Lane
    messages: list[Message]
    chain: frozenset[str]
    alone: bool
    result: asyncio.Future[list[Outcome]]


class _Batcher:
    """One subscription's handler calls: combines the lanes' ready batches into one call, with at
    most `concurrency` calls running (so one slow call does not hold up the other keys)."""

    def __init__(self, sub: Subscription, concurrency: int) -> None:
        self._sub = sub
        self._concurrency = max(1, concurrency)
        self._queue: list[_Request] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, lane: Lane, messages: list[Message], chain: frozenset[str], *, alone: bool) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        request = _Request(lane=lane, messages=messages, chain=chain, alone=alone, result=loop.create_future())
        self._queue.append(request)
        if len(self.tasks) < self._concurrency:
            self.tasks.add(loop.create_task(self._run(), context=contextvars.Context()))
        return await request.result

    def _take(self) -> list[_Request]:
        first = self._queue.pop(0)
        if first.alone:
            return [first]
        taken, size, rest = [first], len(first.messages), []
        for request in self._queue:
            if not request.alone and size + len(request.messages) <= self._sub.max_batch:
                taken.append(request)
                size += len(request.messages)
            else:
                rest.append(request)
        self._queue = rest
        return taken

    async def _run(self) -> None:
        taken: list[_Request] = []
        try:
            await asyncio.sleep(0)  # let the other lanes that are ready join this call
            while self._queue:
                taken = self._take()
                await self._call(taken)
                taken = []
        finally:
            # Leave the set at once (no await since the queue was found empty), so a request
            # queued from now on starts a new call instead of waiting for a done callback.
            self.tasks.discard(asyncio.current_task())
            for r in taken:  # only when cancelled (shutdown): no request is left without an answer
                if not r.result.done():
                    r.result.cancel()

    async def _call(self, taken: list[_Request]) -> None:
        messages = [m for r in taken for m in r.messages]
        chain = frozenset({self._sub.name}).union(*(r.chain for r in taken))
        _bind(self._sub, messages, chain)
        try:
            outcomes = await self._sub.handle_batch(messages)
        except Exception as exc:
            error: BaseException = exc
            if len(messages) > 1 and not isinstance(exc, Unavailable):
                log.warning(
                    "events.batch_failed", batch=len(messages), error=f"{type(exc).__name__}: {exc}", exc_info=True
                )
                error = _BatchFailed(exc)
            for r in taken:
                if not r.result.done():
                    r.result.set_exception(error)
            return
        offset = 0
        for r in taken:
            if not r.result.done():
                r.result.set_result(list(outcomes[offset : offset + len(r.messages)]))
            offset += len(r.messages)


def _bind(sub: Subscription, messages: list[Message], chain: frozenset[str]) -> None:
    _blocking.set(chain)
    structlog.contextvars.clear_contextvars()
    first = messages[0]
    structlog.contextvars.bind_contextvars(subscription=sub.name, topic=first.topic, message_id=first.id)
    if len(messages) > 1:
        structlog.contextvars.bind_contextvars(batch=len(messages))
    if first.trace_id:
        structlog.contextvars.bind_contextvars(trace_id=first.trace_id)


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
    chain: frozenset[str]
    settled: asyncio.Future[None]
    attempts: int = 0


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
        concurrency: int = 4,
    ) -> None:
        self._clock = clock
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._dead_letters = dead_letters
        self._sleep = sleep
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._names: set[str] = set()
        self._lanes: dict[Lane, _LaneState] = {}
        self._batchers: dict[str, _Batcher] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def subscribe(self, subscription: Subscription) -> None:
        if subscription.name in self._names:
            raise ValueError(f"a subscription named {subscription.name!r} already exists")
        self._names.add(subscription.name)
        self._subscriptions.setdefault(subscription.topic, []).append(subscription)
        self._batchers[subscription.name] = _Batcher(subscription, self._concurrency)

    @property
    def subscriptions(self) -> list[Subscription]:
        return [s for subs in self._subscriptions.values() for s in subs]

    async def publish(
        self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None
    ) -> None:
        await self.publish_batch(topic, [Outgoing(data=data, key=key, event_id=event_id, trace_id=trace_id)])

    async def publish_batch(self, topic: str, entries: Sequence[Outgoing]) -> set[str]:
        """Queue `entries` on every subscription's lanes (in order), then wait until each is
        settled (the durable hand-off). Never partly fails: an empty set, or Unavailable."""
        if self._closed:
            raise Unavailable("the event bus is shut down")
        try:
            payload = json.dumps([entry.data for entry in entries])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event data for {topic} must be JSON-serializable") from exc
        EVENTS_PUBLISHED.labels(topic=topic).inc(len(entries))
        chain = _blocking.get()
        waits: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        # Enqueue on every lane before the first await, so publish order is lane order.
        for sub in self._subscriptions.get(topic, ()):
            # Each subscription's own copy of the batch, parsed in one call (pydantic-core's parser:
            # about half the CPU of json.loads per message, the bus's largest cost at 1,000 events/s).
            copies = pydantic_core.from_json(payload)
            for entry, data in zip(entries, copies, strict=True):
                message = Message(id=entry.event_id, topic=topic, data=data, trace_id=entry.trace_id)
                delivery = _Delivery(message=message, key=entry.key, chain=chain, settled=loop.create_future())
                self._enqueue(sub, delivery)
                if sub.name not in chain:
                    waits.append(delivery.settled)
        if waits:
            await asyncio.gather(*waits)
        return set()

    async def idle(self) -> None:
        """Wait until no lane has work (tests' "run until idle")."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop dispatching; publishers still waiting get Unavailable-like cancellation."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        tasks += [t for b in self._batchers.values() for t in b.tasks]
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
        try:
            await self._drain_batches(sub, lane_id, lane)
        finally:
            for delivery in lane.queue if self._closed else ():
                if not delivery.settled.done():
                    delivery.settled.cancel()
        # No await between the empty check and removal: a publish cannot slip in between.
        if not lane.queue and self._lanes.get(lane_id) is lane:
            del self._lanes[lane_id]
            if not self._lanes:
                self._idle.set()

    async def _drain_batches(self, sub: Subscription, lane_id: Lane, lane: _LaneState) -> None:
        isolate = 0  # after a batch raised: this many messages go one at a time
        outages = 0
        while lane.queue:
            size = 1 if isolate else max(1, sub.max_batch)
            batch = [lane.queue[i] for i in range(min(size, len(lane.queue)))]
            messages = [d.message for d in batch]
            chain = frozenset().union(*(d.chain for d in batch))
            reasons: list[str]
            try:
                if sub.batch_handler is None:
                    # A single-message handler gains nothing from combined calls: each lane calls it
                    # on its own, so a slow message of one key never holds up another key.
                    _bind(sub, messages, chain | {sub.name})
                    outcomes = await sub.handle_batch(messages)
                else:
                    outcomes = await self._batchers[sub.name].handle(lane_id, messages, chain, alone=bool(isolate))
                reasons = [f"handler answered {o.value}" for o in outcomes]
                outages = 0
            except Unavailable as exc:
                # The database is down: the handler cannot succeed, nor a dead letter be recorded,
                # until it is back. Wait for it (backing off) instead of using up the attempts and
                # giving the events up after seconds of an outage; shutdown cancels the wait, and the
                # outbox then delivers them again on the next start.
                outages += 1
                log.warning("events.backend_unavailable", outages=outages, batch=len(batch), error=str(exc))
                EVENTS_CONSUMED.labels(topic=sub.topic, outcome="retry").inc(len(batch))
                await self._sleep(self._retry.delay(min(outages, 16)))
                continue
            except _BatchFailed:
                # Find the message that fails: this lane's messages again, one at a time, alone.
                isolate = len(batch)
                continue
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                outcomes, reasons = [outcome_for(exc)], [reason]
                log.warning(
                    "events.handler_failed",
                    attempt=batch[0].attempts + 1,
                    outcome=outcomes[0].value,
                    error=reason,
                    exc_info=True,
                )
            settled, retry_after = await self._settle(sub, lane, batch, outcomes, reasons)
            isolate = max(0, isolate - settled)
            if retry_after is not None:
                await self._sleep(retry_after)

    async def _settle(
        self,
        sub: Subscription,
        lane: _LaneState,
        batch: list[_Delivery],
        outcomes: Sequence[Outcome],
        reasons: list[str],
    ) -> tuple[int, float | None]:
        """Settle the batch's messages in order, up to the first one to retry later: how many were
        settled, and when to hand that one (and the rest of the lane) again."""
        settled = 0
        for delivery, outcome, reason in zip(batch, outcomes, reasons, strict=False):
            EVENTS_CONSUMED.labels(topic=sub.topic, outcome=outcome.value.lower()).inc()
            if outcome is Outcome.RETRY:
                delivery.attempts += 1
                if delivery.attempts < self._retry.attempts:
                    return settled, self._retry.delay(delivery.attempts)
                await self._dead_letter(
                    sub,
                    delivery,
                    f"gave up after {self._retry.attempts} attempts: {reason}",
                    self._retry.attempts,
                )
            elif outcome is Outcome.DROP:
                await self._dead_letter(sub, delivery, f"dropped: {reason}", delivery.attempts + 1)
            lane.queue.popleft()
            settled += 1
            if not delivery.settled.done():
                delivery.settled.set_result(None)
        return settled, None

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
