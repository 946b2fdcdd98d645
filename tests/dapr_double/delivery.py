"""Delivering broker messages to subscribed apps, with Dapr's retry and dead-letter rules.

Response handling follows the pub/sub API reference
(https://docs.dapr.io/reference/api/pubsub_api/#expected-http-response):
2xx with `{"status": "SUCCESS"}`, an empty or unparsable body -> acknowledged;
`RETRY` or an unknown status -> retried; `DROP` -> dropped; HTTP 404 -> dropped;
any other status or a transport error -> retried. Retries use a constant backoff
(`redelivery_backoff`) up to `max_delivery_attempts`, standing in for a resiliency
policy (https://docs.dapr.io/operations/resiliency/policies/). When attempts run out,
or the message is dropped, expired or matches no route, it goes to the subscription's
`deadLetterTopic` if one is set
(https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-deadletter/;
that DROP and "no matching route" also dead-letter is daprd's behaviour in
dapr/dapr `pkg/runtime/subscription/subscription.go`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from . import cloudevents
from .apps import AppRegistry
from .broker import Broker, BrokerMessage, PendingDelivery
from .clock import Clock
from .goformats import parse_bool
from .subscriptions import RouteMatchError, Subscription, match_route

DeadLetterPublisher = Callable[[BrokerMessage, str], Awaitable[None]]

SUCCESS, RETRY, DROP = "success", "retry", "drop"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to hand a message to an app (status_code is None if it never reached the app)."""

    app_id: str
    pubsub: str
    topic: str
    seq: int
    attempt: int
    outcome: str  # success | retry | drop | error | lost | unrouted | expired
    path: str | None = None
    event: dict[str, Any] | None = None
    status_code: int | None = None
    duplicate: bool = False


@dataclass
class FaultBudget:
    remaining: int
    app_id: str | None = None
    topic: str | None = None

    def take(self, app_id: str, topic: str) -> bool:
        if self.remaining <= 0 or self.app_id not in (None, app_id) or self.topic not in (None, topic):
            return False
        self.remaining -= 1
        return True


@dataclass
class DeliveryFaults:
    """Injected faults: lost deliveries (retried) and duplicated deliveries (at-least-once)."""

    lost: list[FaultBudget] = field(default_factory=list)
    duplicated: list[FaultBudget] = field(default_factory=list)

    @staticmethod
    def _take(budgets: list[FaultBudget], app_id: str, topic: str) -> bool:
        return any(b.take(app_id, topic) for b in budgets)

    def take_lost(self, app_id: str, topic: str) -> bool:
        return self._take(self.lost, app_id, topic)

    def take_duplicate(self, app_id: str, topic: str) -> bool:
        return self._take(self.duplicated, app_id, topic)


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int = 5
    backoff: float = 0.05
    poll_interval: float = 0.5


class _Undeliverable(Exception):
    """The message cannot be turned into a request (bad envelope or CEL evaluation error)."""


def classify(response: httpx2.Response) -> str:
    """Map the app's answer to SUCCESS / RETRY / DROP (see module docstring)."""
    code = response.status_code
    if 200 <= code <= 299:
        try:
            status = json.loads(response.content).get("status")
        except (ValueError, AttributeError):
            return SUCCESS
        if status in (None, "", "SUCCESS") or not isinstance(status, str):
            return SUCCESS
        return DROP if status == "DROP" else RETRY
    return DROP if code == 404 else RETRY


class Deliverer:
    """Background loop offering due deliveries to apps, one task per delivery."""

    def __init__(
        self,
        broker: Broker,
        apps: AppRegistry,
        clock: Clock,
        settings: DeliverySettings,
        dead_letter: DeadLetterPublisher,
    ) -> None:
        self._broker = broker
        self._apps = apps
        self._clock = clock
        self._settings = settings
        self._dead_letter = dead_letter
        self.faults = DeliveryFaults()
        self.attempts: list[DeliveryAttempt] = []
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._paused = False
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        # Internal failures (e.g. the database went away) are kept and re-raised by
        # wait_idle, so a broken double fails the test instead of hanging it.
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="dapr-double-delivery")

    async def stop(self) -> None:
        # The flag ends the loop even if a cancellation is lost in a race with a wake-up.
        self._stopping = True
        self.wake()
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        # Failures of finished tasks were already recorded in `errors`.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.wake()

    async def wait_idle(self, timeout: float) -> None:  # noqa: ASYNC109 - a deadline is this helper's point
        """Return once nothing is pending or in flight; raise TimeoutError otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight or await self._broker.pending_count():
                    self._raise_internal_error()
                    await asyncio.sleep(0.01)
        except TimeoutError:
            self._raise_internal_error()
            statuses = await self._broker.statuses()
            state = "paused" if self._paused else "running"
            raise TimeoutError(
                f"deliveries not idle after {timeout}s (delivery {state}; by status: {statuses})"
            ) from None

    def _raise_internal_error(self) -> None:
        if self.errors:
            raise RuntimeError("the sidecar double's delivery loop failed") from self.errors[0]

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._offer_due()
            except Exception as exc:  # keep delivering; the failure surfaces in wait_idle
                self.errors.append(exc)
                await asyncio.sleep(self._settings.poll_interval)

    async def _offer_due(self) -> None:
        """Start a task for every due delivery, then sleep until woken or the next retry is due."""
        self._wake.clear()
        timeout: float | None = None  # paused: sleep until resume() wakes us
        if not self._paused:
            now = datetime.now(UTC)
            for delivery in await self._broker.due(now, self._in_flight):
                self._in_flight.add(delivery.id)
                task = asyncio.create_task(self._deliver(delivery))
                self._tasks.add(task)
                task.add_done_callback(lambda t, d=delivery.id: self._finished(t, d))
            next_at = await self._broker.next_due_at(self._in_flight)
            timeout = self._settings.poll_interval
            if next_at is not None:
                timeout = min(timeout, max(0.0, (next_at - datetime.now(UTC)).total_seconds()))
        if timeout is None:
            await self._wake.wait()
            return
        # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that races with the event being set.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _finished(self, task: asyncio.Task[None], delivery_id: int) -> None:
        self._tasks.discard(task)
        self._in_flight.discard(delivery_id)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]
        self.wake()

    def _record(self, delivery: PendingDelivery, attempt: int, outcome: str, **extra: Any) -> None:
        message = delivery.message
        self.attempts.append(
            DeliveryAttempt(delivery.app_id, message.pubsub, message.topic, message.seq, attempt, outcome, **extra)
        )

    async def _deliver(self, delivery: PendingDelivery) -> None:
        message = delivery.message
        channel = self._apps.get(delivery.app_id)
        subscription = channel.subscription_for(message.pubsub, message.topic) if channel else None
        attempt = delivery.attempts + 1
        if channel is None or subscription is None:
            await self._broker.settle(delivery.id, "unsubscribed", delivery.attempts)
            return
        try:
            body, event = self._prepare(message, subscription)
            if cloudevents.has_expired(event, self._clock.now()):
                self._record(delivery, attempt, "expired", event=event)
                await self._drop(delivery, subscription, attempt)
                return
            path = self._route(subscription, event)
        except _Undeliverable:
            self._record(delivery, attempt, "error")
            # daprd dead-letters these at once when it can, else hands them back to the broker.
            if subscription.dead_letter_topic:
                await self._dead_letter(message, subscription.dead_letter_topic)
                await self._broker.settle(delivery.id, "dead_lettered", attempt)
            else:
                await self._retry_or_give_up(delivery, subscription, attempt)
            return
        if path is None:
            self._record(delivery, attempt, "unrouted", event=event)
            await self._drop(delivery, subscription, attempt)
            return
        outcome = await self._post(delivery, attempt, path, body, event, duplicate=False)
        if outcome == SUCCESS:
            await self._broker.settle(delivery.id, "acked", attempt)
            if self.faults.take_duplicate(delivery.app_id, message.topic):
                # The broker redelivers an already acknowledged message, as after a lost ack.
                await self._post(delivery, attempt, path, body, event, duplicate=True)
        elif outcome == DROP:
            await self._drop(delivery, subscription, attempt)
        else:
            await self._retry_or_give_up(delivery, subscription, attempt)

    def _prepare(self, message: BrokerMessage, subscription: Subscription) -> tuple[bytes, dict[str, Any]]:
        try:
            raw = parse_bool(subscription.raw_payload) if subscription.raw_payload else False
        except ValueError as exc:
            raise _Undeliverable("rawPayload subscription metadata must be a boolean") from exc
        if raw:
            event = cloudevents.from_raw_payload(message.data, topic=message.topic, pubsub=message.pubsub)
            return cloudevents.encode(event), event
        try:
            event = json.loads(message.data)
        except ValueError as exc:
            raise _Undeliverable("message is not a CloudEvent") from exc
        if not isinstance(event, dict):
            raise _Undeliverable("message is not a CloudEvent")
        # The stored bytes go to the app unchanged; the parsed envelope is only for routing.
        return message.data, event

    @staticmethod
    def _route(subscription: Subscription, event: dict[str, Any]) -> str | None:
        try:
            return match_route(subscription.rules, event)
        except RouteMatchError as exc:
            raise _Undeliverable(str(exc)) from exc

    async def _post(
        self,
        delivery: PendingDelivery,
        attempt: int,
        path: str,
        body: bytes,
        event: dict[str, Any],
        *,
        duplicate: bool,
    ) -> str:
        channel = self._apps.get(delivery.app_id)
        if channel is None:
            return RETRY
        if not duplicate and self.faults.take_lost(delivery.app_id, delivery.message.topic):
            self._record(delivery, attempt, "lost", path=path, event=event)
            return RETRY
        trace = event.get("traceparent") or event.get("traceid")
        headers = {
            "content-type": cloudevents.CLOUD_EVENT_CONTENT_TYPE,
            "pubsubname": delivery.message.pubsub,
            "traceparent": cloudevents.child_traceparent(trace if isinstance(trace, str) else None),
        }
        if isinstance(event.get("tracestate"), str) and event["tracestate"]:
            headers["tracestate"] = event["tracestate"]
        try:
            response = await channel.request("POST", path, content=body, headers=headers)
        except httpx2.TransportError:
            self._record(delivery, attempt, "error", path=path, event=event, duplicate=duplicate)
            return RETRY
        outcome = classify(response)
        self._record(
            delivery, attempt, outcome, path=path, event=event, status_code=response.status_code, duplicate=duplicate
        )
        return outcome

    async def _drop(self, delivery: PendingDelivery, subscription: Subscription, attempt: int) -> None:
        if subscription.dead_letter_topic:
            await self._dead_letter(delivery.message, subscription.dead_letter_topic)
            await self._broker.settle(delivery.id, "dead_lettered", attempt)
        else:
            await self._broker.settle(delivery.id, "dropped", attempt)

    async def _retry_or_give_up(self, delivery: PendingDelivery, subscription: Subscription, attempt: int) -> None:
        if attempt < self._settings.max_attempts:
            not_before = datetime.now(UTC) + timedelta(seconds=self._settings.backoff)
            await self._broker.reschedule(delivery.id, attempt, not_before)
        elif subscription.dead_letter_topic:
            await self._dead_letter(delivery.message, subscription.dead_letter_topic)
            await self._broker.settle(delivery.id, "dead_lettered", attempt)
        else:
            await self._broker.settle(delivery.id, "failed", attempt)
