"""Ports for delivery: publishing events, consuming them, and scheduling jobs at exact times.

Embedded mode implements them in-process (`doable.events.inprocess`, `doable.jobs.embedded`);
Dapr mode through the sidecar (`doable.events.dapr`, `doable.jobs.dapr`). Handlers are written
once against these ports and run unchanged in both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from doable.domain.errors import Conflict, DoableError, Unavailable


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


class DeadLetterSink(Protocol):
    """Where dead letters are recorded: the bus in embedded mode (`doable.events.inprocess`),
    the dead-letter topic's consumer in Dapr mode (`workers.dead_letters`)."""

    async def record(
        self,
        *,
        subscription: str,
        topic: str,
        message_id: str,
        key: str,
        data: dict[str, Any],
        reason: str,
        attempts: int,
        at: datetime,
    ) -> bool:
        """Record one dead letter; False if (subscription, message_id) was already recorded (a
        redelivery), which changes nothing."""
        ...


class EventPublisher(Protocol):
    async def publish(self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None) -> None:
        """Publish `data` on `topic`; `key` orders messages (the user id), `event_id` becomes the CloudEvent id.

        Raises Unavailable when the broker cannot take it now (the outbox relay retries)."""
        ...


@dataclass(frozen=True)
class Job:
    """A one-shot job. Dapr delivers only `data` back (POST /job/{name}), so handlers read
    everything they need from `data`; `due_at` is what was asked for when scheduling."""

    name: str
    due_at: datetime
    data: dict[str, Any]


JobHandler = Callable[[Job], Awaitable[Outcome]]
# A periodic trigger (Dapr cron input binding in Dapr mode, a timer in embedded mode).
CronHandler = Callable[[], Awaitable[Outcome]]


@dataclass(frozen=True)
class Cron:
    binding: str  # the Dapr input binding's name; Dapr POSTs /{binding}
    handler: CronHandler
    every_seconds: float  # embedded mode's period (Dapr mode uses the component's schedule)


class JobScheduler(Protocol):
    async def schedule(self, job: Job) -> None:
        """Create or overwrite the job `job.name` to fire once at `job.due_at`."""
        ...

    async def cancel(self, name: str) -> None:
        """Delete the job if it exists (no error otherwise)."""
        ...


def outcome_for(exc: BaseException) -> Outcome:
    """How a failed handler answers its transport: a retry can fix conflicts, outages and
    unexpected errors (the transport dead-letters after its bound); bad input never heals."""
    if isinstance(exc, Conflict | Unavailable):
        return Outcome.RETRY
    if isinstance(exc, DoableError):
        return Outcome.DROP
    return Outcome.RETRY
