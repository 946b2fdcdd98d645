"""Delivering broker messages to subscribed apps, as daprd and the Kafka component do.

Response handling follows daprd's HTTP postman (dapr/dapr v1.16.19-v1.18.3
`pkg/runtime/subscription/postman/http/http.go` Deliver): a 2xx with `{"status": "SUCCESS"}`,
an empty status or an undecodable body is a success; `RETRY` or an unknown status is a
retriable error; `DROP` and HTTP 404 are ErrMessageDropped; any other status and a transport
error are retriable errors.

Two retry models:

* **daprd + pubsub.kafka** (when the double has manifests or an inbound Resiliency policy for
  the subscriber): `pkg/runtime/subscription/subscription.go` runs each handler call under
  `ComponentInboundPolicy(pubsub)` (no policy: one attempt). When the policy gives up, the
  message goes to the subscription's `deadLetterTopic` and is acknowledged; without one (or if
  that publish fails) the error goes back to the Kafka component, whose ConsumeClaim
  (dapr/components-contrib `common/component/kafka/consumer.go`) calls the handler again under
  its `backOff*` policy while the message holds its partition: by default for ever, every 5s
  (`consumeRetryEnabled` true, dapr/kit `retry.DefaultConfig`). See `_component_retry`.
* **the double's simple policy** otherwise: `max_delivery_attempts` attempts, `redelivery_backoff`
  apart, then the dead-letter topic or "failed".

Either way a message that is dropped, expired or matches no route goes to the dead-letter
topic if one is set (subscription.go), and deliveries are serial per partition (broker.py).

A subscription with `bulkSubscribe.enabled` is handed to bulk_subscribe.py instead (batches per
claim, one request per path, per-entry statuses), always with the daprd + Kafka model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx2

from . import cloudevents
from .apps import AppChannel
from .broker import Broker, BrokerMessage, PendingDelivery
from .bulk_subscribe import BulkSubscriber
from .clock import Clock
from .goformats import parse_bool
from .resiliency import CodeError
from .subscriptions import RouteMatchError, Subscription, match_route

if TYPE_CHECKING:
    from .pubsub import InboundPolicy as InboundPolicyLike
    from .pubsub import PubSubService

SUCCESS, RETRY, DROP = "success", "retry", "drop"
DROPPED, DEAD_LETTERED = "dropped", "dead_lettered"


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
    pod: str | None = None
    partition: int | None = None
    # Bulk subscriptions (bulk_subscribe.py): the entry's id in its bulk and the bulk request's id.
    entry_id: str | None = None
    bulk_id: str | None = None


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


class RetriableDeliveryError(Exception):
    """postman.Deliver's retriable error; `status_code` is the app's HTTP status (None: no response)."""

    def __init__(self, status_code: int | None) -> None:
        super().__init__(f"retriable error delivering to the app (status {status_code})")
        self.status_code = status_code


@dataclass
class _Delivery:
    """One delivery being handled: the message, the pod it went to, and the attempts so far."""

    delivery: PendingDelivery
    channel: AppChannel
    subscription: Subscription
    attempts: int
    last_status: int | None = None


class _Topology(Protocol):
    def owner(self, delivery: PendingDelivery) -> AppChannel | None: ...
    def subscription(self, channel: AppChannel, pubsub: str, topic: str) -> Subscription | None: ...
    def inbound_policy(self, app_id: str, pubsub: str) -> InboundPolicyLike | None: ...
    def models_kafka(self, inbound: InboundPolicyLike | None) -> bool: ...
    def component(self, pubsub: str) -> Any: ...
    async def dead_letter(self, message: BrokerMessage, topic: str, app_id: str) -> None: ...


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
        topology: PubSubService | _Topology,
        clock: Clock,
        settings: DeliverySettings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._broker = broker
        self._topology = topology
        self._clock = clock
        self._settings = settings
        self._rng = rng or random.Random()
        self.faults = DeliveryFaults()
        self.attempts: list[DeliveryAttempt] = []
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._paused = False
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._bulk = BulkSubscriber(self, broker)
        # Internal failures (e.g. the database went away) are kept and re-raised by
        # wait_idle, so a broken double fails the test instead of hanging it.
        self.errors: list[BaseException] = []

    @property
    def topology(self) -> Any:
        return self._topology

    @property
    def rng(self) -> random.Random:
        return self._rng

    @property
    def clock(self) -> Clock:
        return self._clock

    def record_bulk(self, channel: AppChannel, message: BrokerMessage, outcome: str, **extra: Any) -> None:
        """Record what one entry of a bulk delivery did (one DeliveryAttempt per entry and request)."""
        self.attempts.append(
            DeliveryAttempt(
                channel.app_id,
                message.pubsub,
                message.topic,
                message.seq,
                sum(1 for a in self.attempts if a.seq == message.seq and a.app_id == channel.app_id) + 1,
                outcome,
                pod=channel.pod,
                partition=message.partition,
                **extra,
            )
        )

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
            next_tick: float | None = None
            # The claims' heads: those due now are offered; the others wait for their retry time.
            # (A due bulk head that is not flushed waits for its ticker: next_tick.)
            due, next_at = await self._broker.heads(now, self._in_flight)
            for delivery in due:
                if delivery.id in self._in_flight:
                    continue  # taken by a bulk flush started in this pass
                bulk = self._bulk_subscription(delivery)
                if bulk is not None:
                    waiting = await self._bulk.offer(delivery, *bulk, self._in_flight, self._start_bulk)
                    if waiting is not None:
                        next_tick = waiting if next_tick is None else min(next_tick, waiting)
                    continue
                self._in_flight.add(delivery.id)
                task = asyncio.create_task(self._deliver(delivery))
                self._tasks.add(task)
                task.add_done_callback(lambda t, d=delivery.id: self._finished(t, d))
            timeout = self._settings.poll_interval
            if next_at is not None:
                timeout = min(timeout, max(0.0, (next_at - datetime.now(UTC)).total_seconds()))
            if next_tick is not None:
                timeout = min(timeout, max(0.0, next_tick - time.monotonic()))
        if timeout is None:
            await self._wake.wait()
            return
        # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that races with the event being set.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _bulk_subscription(self, delivery: PendingDelivery) -> tuple[AppChannel, Subscription] | None:
        """The owner and its subscription when that subscription is a bulk one."""
        message = delivery.message
        channel = self._topology.owner(delivery)
        if channel is None:
            return None
        subscription = self._topology.subscription(channel, message.pubsub, message.topic)
        if subscription is None or not subscription.bulk_enabled:
            return None
        return channel, subscription

    def _start_bulk(self, ids: list[int], flush: Any) -> None:
        self._in_flight.update(ids)
        task = asyncio.create_task(flush)
        self._tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._in_flight.difference_update(ids)
            if not t.cancelled() and t.exception() is not None:
                self.errors.append(t.exception())  # type: ignore[arg-type]
            self.wake()

        task.add_done_callback(finished)

    def _finished(self, task: asyncio.Task[None], delivery_id: int) -> None:
        self._tasks.discard(task)
        self._in_flight.discard(delivery_id)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]
        self.wake()

    def _record(self, ctx: _Delivery, attempt: int, outcome: str, **extra: Any) -> None:
        message = ctx.delivery.message
        self.attempts.append(
            DeliveryAttempt(
                ctx.channel.app_id,
                message.pubsub,
                message.topic,
                message.seq,
                attempt,
                outcome,
                pod=ctx.channel.pod,
                partition=message.partition,
                **extra,
            )
        )

    async def _settle(self, ctx: _Delivery, status: str) -> None:
        await self._broker.settle(ctx.delivery.id, status, ctx.attempts, app_id=ctx.channel.app_id, pod=ctx.channel.pod)

    async def _deliver(self, delivery: PendingDelivery) -> None:
        message = delivery.message
        channel = self._topology.owner(delivery)
        subscription = self._topology.subscription(channel, message.pubsub, message.topic) if channel else None
        if channel is None or subscription is None:
            await self._broker.settle(delivery.id, "unsubscribed", delivery.attempts)
            return
        ctx = _Delivery(delivery, channel, subscription, delivery.attempts)
        inbound = self._topology.inbound_policy(channel.app_id, message.pubsub)
        kafka = self._topology.models_kafka(inbound)
        try:
            body, event = self._prepare(message, subscription)
            if cloudevents.has_expired(event, self._clock.now()):
                # subscription.go: an expired event is dropped (dead-lettered if it can be) and acked.
                ctx.attempts += 1
                self._record(ctx, ctx.attempts, "expired", event=event)
                await self._drop(ctx)
                return
            path = self._route(subscription, event)
        except _Undeliverable:
            ctx.attempts += 1
            self._record(ctx, ctx.attempts, "error")
            # subscription.go: dead-lettered at once when it can be, else the error goes back to
            # the component, which retries the message (no inbound policy around this part).
            if subscription.dead_letter_topic and await self._try_dead_letter(ctx):
                await self._settle(ctx, "dead_lettered")
            elif kafka:
                await self._component_retry(ctx)
            else:
                await self._retry_or_give_up(ctx)
            return
        if path is None:
            # subscription.go: "no matching route ... skipping", dead-lettered if it can be, acked.
            ctx.attempts += 1
            self._record(ctx, ctx.attempts, "unrouted", event=event)
            await self._drop(ctx)
            return
        if not kafka:
            ctx.attempts += 1
            outcome = await self._post(ctx, ctx.attempts, path, body, event, duplicate=False)
            if outcome == SUCCESS:
                await self._acked(ctx, path, body, event)
            elif outcome == DROP:
                await self._drop(ctx)
            else:
                await self._retry_or_give_up(ctx)
            return
        outcome = await self._run_inbound(ctx, inbound, path, body, event)
        if outcome == SUCCESS:
            await self._acked(ctx, path, body, event)
        elif outcome in (DROPPED, DEAD_LETTERED):
            await self._settle(ctx, outcome)
        elif subscription.dead_letter_topic and await self._try_dead_letter(ctx):
            # subscription.go: the policy gave up; "Sending msg to dead letter queue".
            await self._settle(ctx, DEAD_LETTERED)
        else:
            # "If no DLQ is configured, return error for backwards compatibility (component-level retry)."
            await self._component_retry(ctx)

    async def _run_inbound(
        self, ctx: _Delivery, inbound: InboundPolicyLike | None, path: str, body: bytes, event: dict[str, Any]
    ) -> str:
        """One handler call of the Kafka component: the app call under the inbound policy.

        As in subscription.go, the policy runner wraps `postman.Deliver`: RETRY, an unknown
        status, a non-2xx other than 404 and a transport error are errors the policy retries;
        DROP and 404 are ErrMessageDropped, dead-lettered inside the policy (a failed
        dead-letter publish is an error, so the policy retries it) and then acknowledged.
        Returns SUCCESS, DROPPED, DEAD_LETTERED or RETRY (the policy gave up).
        """

        async def operation() -> str:
            ctx.attempts += 1
            outcome = await self._post(ctx, ctx.attempts, path, body, event, duplicate=False)
            if outcome == RETRY:
                status = ctx.last_status
                if status is not None and not 200 <= status <= 299:
                    # postman/http.go: "return error status code for resiliency to decide on
                    # retry" (resiliency.NewCodeError), so `matching.httpStatusCodes` applies.
                    raise CodeError(status)
                raise RetriableDeliveryError(status)
            if outcome == DROP:
                if not ctx.subscription.dead_letter_topic:
                    return DROPPED
                await self._topology.dead_letter(
                    ctx.delivery.message, ctx.subscription.dead_letter_topic, ctx.channel.app_id
                )
                return DEAD_LETTERED
            return SUCCESS

        try:
            return await (inbound.run(operation) if inbound is not None else operation())
        except asyncio.CancelledError:
            raise
        except Exception:  # every error of the handler goes back to the component
            return RETRY

    async def _component_retry(self, ctx: _Delivery) -> None:
        """The Kafka component after a failed handler call (consumer.go ConsumeClaim).

        With consumeRetryEnabled (pubsub.kafka's default) the handler is called again under
        the component's `backOff*` policy (`retry.NotifyRecover`); the message holds its
        partition meanwhile, as the claim loop reads nothing else. Once that back-off gives up
        ("Too many failed attempts"), or without consumeRetryEnabled, the offset is not marked
        but the loop moves on: the next message's MarkMessage commits past it, so it is never
        redelivered (only a rebalance before that commit would). Recorded as "failed".
        """
        delivery = ctx.delivery
        component = self._topology.component(delivery.message.pubsub)
        now = datetime.now(UTC)
        first_failed = delivery.first_failed_at or now
        retry = delivery.redeliveries + 1
        delay = None
        if component.consume_retry_enabled():
            delay = component.back_off().delay(retry, (now - first_failed).total_seconds(), self._rng)
        if delay is None:
            await self._settle(ctx, "failed")
            return
        await self._broker.reschedule(
            delivery.id,
            ctx.attempts,
            now + timedelta(seconds=delay),
            redeliveries=retry,
            first_failed_at=first_failed,
            app_id=ctx.channel.app_id,
            pod=ctx.channel.pod,
        )

    async def _acked(self, ctx: _Delivery, path: str, body: bytes, event: dict[str, Any]) -> None:
        await self._settle(ctx, "acked")
        if self.faults.take_duplicate(ctx.channel.app_id, ctx.delivery.message.topic):
            # The broker redelivers an already acknowledged message, as after a lost ack.
            await self._post(ctx, ctx.attempts, path, body, event, duplicate=True)

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
        ctx: _Delivery,
        attempt: int,
        path: str,
        body: bytes,
        event: dict[str, Any],
        *,
        duplicate: bool,
    ) -> str:
        ctx.last_status = None
        topic = ctx.delivery.message.topic
        if not duplicate and self.faults.take_lost(ctx.channel.app_id, topic):
            self._record(ctx, attempt, "lost", path=path, event=event)
            return RETRY
        trace = event.get("traceparent") or event.get("traceid")
        headers = {
            "content-type": cloudevents.CLOUD_EVENT_CONTENT_TYPE,
            "pubsubname": ctx.delivery.message.pubsub,
            "traceparent": cloudevents.child_traceparent(trace if isinstance(trace, str) else None),
        }
        if isinstance(event.get("tracestate"), str) and event["tracestate"]:
            headers["tracestate"] = event["tracestate"]
        try:
            response = await ctx.channel.request("POST", path, content=body, headers=headers)
        except httpx2.TransportError:
            self._record(ctx, attempt, "error", path=path, event=event, duplicate=duplicate)
            return RETRY
        ctx.last_status = response.status_code
        outcome = classify(response)
        self._record(
            ctx, attempt, outcome, path=path, event=event, status_code=response.status_code, duplicate=duplicate
        )
        return outcome

    async def _try_dead_letter(self, ctx: _Delivery) -> bool:
        """Publish to the subscription's dead-letter topic as the subscriber; False if that failed."""
        try:
            await self._topology.dead_letter(
                ctx.delivery.message, ctx.subscription.dead_letter_topic, ctx.channel.app_id
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # refused by scopes, outbound policy exhausted, broker down
            return False
        return True

    async def _drop(self, ctx: _Delivery) -> None:
        """Acknowledge a message that is not handled, dead-lettering it first when possible."""
        if ctx.subscription.dead_letter_topic and await self._try_dead_letter(ctx):
            await self._settle(ctx, DEAD_LETTERED)
        else:
            await self._settle(ctx, DROPPED)

    async def _retry_or_give_up(self, ctx: _Delivery) -> None:
        """The double's simple policy (no manifests, no inbound Resiliency policy)."""
        if ctx.attempts < self._settings.max_attempts:
            not_before = datetime.now(UTC) + timedelta(seconds=self._settings.backoff)
            await self._broker.reschedule(
                ctx.delivery.id, ctx.attempts, not_before, app_id=ctx.channel.app_id, pod=ctx.channel.pod
            )
            return
        if ctx.subscription.dead_letter_topic and await self._try_dead_letter(ctx):
            await self._settle(ctx, DEAD_LETTERED)
        else:
            await self._settle(ctx, "failed")
