"""Delivery ports: publishing events, recording dead letters, scheduling jobs at exact times, and
the outbox as its relay reads it.

Embedded mode implements them in-process (`doable.adapters.embedded.bus`, `doable.adapters.embedded.jobs`);
Dapr mode through the sidecar (`doable.adapters.dapr.messaging`). The message and job types they carry
are in `doable.ports.messages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from doable.domain.events import TaskEvent
from doable.ports.messages import Job, Outgoing


class DeadLetterSink(Protocol):
    """Where dead letters are recorded: the bus in embedded mode (`doable.adapters.embedded.bus`),
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
    async def publish(
        self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None
    ) -> None:
        """Publish `data` on `topic`; `key` orders messages (the user id), `event_id` becomes the CloudEvent id.

        Raises Unavailable when the broker cannot take it now (the outbox relay retries)."""
        ...

    async def publish_batch(self, topic: str, entries: Sequence[Outgoing]) -> set[str]:
        """Publish `entries` on `topic` (each key's entries in order); the event ids that were not
        taken (empty when all were). Raises Unavailable when none could be."""
        ...


class JobScheduler(Protocol):
    async def schedule(self, job: Job) -> None:
        """Create or overwrite the job `job.name` to fire once at `job.due_at`."""
        ...

    async def cancel(self, name: str) -> None:
        """Delete the job if it exists (no error otherwise)."""
        ...

    async def schedule_many(self, jobs: Sequence[Job]) -> None:
        """`schedule` for each of `jobs` (one write where the backend allows)."""
        ...

    async def cancel_many(self, names: Sequence[str]) -> None:
        """`cancel` for each of `names` (one write where the backend allows)."""
        ...


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    event: TaskEvent
    created_at: datetime
    attempts: int


class OutboxView(Protocol):
    """What the runtime reads of the outbox: what waits to be published, and recent history."""

    async def pending(self, limit: int = 100) -> list[OutboxRecord]: ...

    async def depth(self) -> int: ...

    async def history(self, user_id: str, task_id: int | None = None, limit: int = 50) -> list[TaskEvent]:
        """Recorded events of one user (optionally one task), newest first."""
        ...


class OutboxReader(OutboxView, Protocol):
    """The embedded relay's side of the outbox: read what is not yet published, then mark it.
    (The Dapr outbox is relayed by its own loop, doable.adapters.dapr.outbox.DaprOutbox.)"""

    async def mark_published(self, seqs: list[int]) -> None: ...

    async def mark_failed(self, seqs: list[int]) -> None: ...
