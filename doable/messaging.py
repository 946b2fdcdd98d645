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


@dataclass(frozen=True)
class Subscription:
    topic: str
    handler: Handler
    name: str  # unique per app; the Dapr route is /events/{name}


class EventPublisher(Protocol):
    async def publish(self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None) -> None:
        """Publish `data` on `topic`; `key` orders messages (the user id), `event_id` becomes the CloudEvent id.

        Raises Unavailable when the broker cannot take it now (the outbox relay retries)."""
        ...


@dataclass(frozen=True)
class Job:
    name: str
    due_at: datetime
    data: dict[str, Any]


JobHandler = Callable[[Job], Awaitable[Outcome]]


class JobScheduler(Protocol):
    async def schedule(self, job: Job) -> None:
        """Create or overwrite the job `job.name` to fire once at `job.due_at`."""
        ...

    async def cancel(self, name: str) -> None:
        """Delete the job if it exists (no error otherwise)."""
        ...
