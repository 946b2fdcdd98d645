"""Delivery's messages and jobs: what handlers receive (Message, Job), what they answer (Outcome),
and how they are subscribed (Subscription, Cron).

The ports that carry them (EventPublisher, JobScheduler, DeadLetterSink) are in
`doable.ports.events`; embedded mode implements them in-process (`doable.adapters.embedded.bus`,
`doable.adapters.embedded.jobs`), Dapr mode through the sidecar (`doable.adapters.dapr.messaging`). Handlers are
written once against these ports and run unchanged in both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from doable.domain.errors import Conflict, DoableError, Unavailable

if TYPE_CHECKING:
    # Only for annotations: doable.ports.events imports this module's types at run time.
    from doable.ports.events import EventPublisher


class Outcome(StrEnum):
    """What a handler tells the transport (Dapr's SUCCESS / RETRY / DROP)."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


@dataclass(frozen=True)
class Message:
    """One delivered event: the CloudEvent id (stable across redeliveries), topic and JSON data."""

    id: str
    topic: str
    data: dict[str, Any]
    trace_id: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Message], Awaitable[Outcome]]
# A batch-first handler: settles each message of the batch, in order. It returns one outcome per
# message it attempted; a shorter list means the rest were not attempted (they are handed again
# without using up an attempt). Raising means none was settled: Unavailable = wait for the
# backend, anything else = the transport retries the messages one at a time, so one bad message
# is retried or dead-lettered alone. Messages of one key come in order; a message that answers
# RETRY is handed again together with the ones after it in its batch (a redelivery for those that
# succeeded), so per-key order holds across batches.
BatchHandler = Callable[[Sequence[Message]], Awaitable[list[Outcome]]]


# Set in Message.attributes (with the reason) for a delivery that is not a readable CloudEvent,
# handed to a subscription with `dead_letters=False`. Not a valid CloudEvent attribute name, so
# no broker message can carry it.
MALFORMED_ATTRIBUTE = "doable.malformed"


@dataclass(frozen=True)
class Subscription:
    topic: str
    handler: Handler
    name: str  # unique per app; the Dapr route is /events/{name}
    # Whether what this subscription gives up on goes to the dead-letter topic. False only for the
    # dead-letter topic's own consumer: it must never feed the topic it reads (a loop), so it is
    # also handed malformed deliveries and always answers SUCCESS or RETRY, never DROP.
    dead_letters: bool = True
    # The batch-first form of `handler` (one transaction per batch); transports that deliver
    # batches (the in-process bus, Dapr bulk subscribe) call it, others call `handler`.
    batch_handler: BatchHandler | None = None
    max_batch: int = 500

    async def handle_batch(self, messages: Sequence[Message]) -> list[Outcome]:
        """Settle `messages` (see BatchHandler): the batch handler, else `handler` one by one."""
        if self.batch_handler is not None:
            return await self.batch_handler(messages)
        return await one_by_one(self.handler, messages)


async def one_by_one(handler: Handler, messages: Sequence[Message]) -> list[Outcome]:
    """A single-message handler as a BatchHandler: in order, stopping at the first RETRY or
    error (the later messages are not attempted, so their order holds)."""
    outcomes: list[Outcome] = []
    for message in messages:
        try:
            outcome = await handler(message)
        except Unavailable:
            if not outcomes:
                raise
            return outcomes
        except Exception as exc:
            if not outcomes:
                raise
            outcomes.append(outcome_for(exc))
            return outcomes
        outcomes.append(outcome)
        if outcome is Outcome.RETRY:
            return outcomes
    return outcomes


@dataclass(frozen=True)
class Outgoing:
    """One message of a batch publish."""

    data: dict[str, Any]
    key: str
    event_id: str
    trace_id: str | None = None


async def publish_many(publisher: EventPublisher, topic: str, entries: Sequence[Outgoing]) -> set[str]:
    """`entries` through the publisher's batch publish (nothing to do for none): the event ids
    that were not taken."""
    if not entries:
        return set()
    return await publisher.publish_batch(topic, entries)


@dataclass(frozen=True)
class Job:
    """A one-shot job. Dapr delivers only `data` back (POST /job/{name}), so handlers read
    everything they need from `data`; `due_at` is what was asked for when scheduling."""

    name: str
    due_at: datetime
    data: dict[str, Any]


JobHandler = Callable[[Job], Awaitable[Outcome]]
# Jobs that fell due together, settled one outcome each (in order); raising retries them all.
JobBatchHandler = Callable[[Sequence[Job]], Awaitable[list[Outcome]]]
# A periodic trigger (Dapr cron input binding in Dapr mode, a timer in embedded mode).
CronHandler = Callable[[], Awaitable[Outcome]]


@dataclass(frozen=True)
class Cron:
    binding: str  # the Dapr input binding's name; Dapr POSTs /{binding}
    handler: CronHandler
    every_seconds: float  # embedded mode's period (Dapr mode uses the component's schedule)


def outcome_for(exc: BaseException) -> Outcome:
    """How a failed handler answers its transport: a retry can fix conflicts, outages and
    unexpected errors (the transport dead-letters after its bound); bad input never heals."""
    if isinstance(exc, Conflict | Unavailable):
        return Outcome.RETRY
    if isinstance(exc, DoableError):
        return Outcome.DROP
    return Outcome.RETRY
