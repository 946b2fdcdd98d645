"""Worker ports: what the event-driven workers (`workers.*`) need besides delivery.

Adapters: `doable.adapters.sql.*` and `doable.adapters.dapr.*` (processed messages, the reminder
ledger); the task service in-process (`workers.reminders.ServiceTaskLookup`,
`workers.recurrence.ServiceOccurrences`) or the API by Dapr service invocation
(`doable.adapters.dapr.invocation`) for the task lookup and the occurrence creator.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from doable.domain.reminders import ScheduledReminder
from doable.domain.task import Task


class ProcessedMessages(Protocol):
    """Which messages each consumer already handled (workers.idempotency)."""

    async def seen(self, consumer: str, message_id: str) -> bool: ...

    async def remember(self, consumer: str, message_id: str, at: datetime) -> None: ...

    async def seen_many(self, consumer: str, message_ids: list[str]) -> set[str]:
        """Which of `message_ids` `consumer` handled (one read)."""
        ...

    async def remember_many(self, consumer: str, message_ids: list[str], at: datetime) -> None:
        """Record `message_ids` as handled by `consumer` (one write)."""
        ...

    async def prune(self, before: datetime) -> int:
        """Forget records older than `before`; how many went."""
        ...


class TaskLookup(Protocol):
    async def get(self, user_id: str, task_id: int) -> Task | None:
        """The task as it is now, or None if it does not exist."""
        ...

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        """`get` for many tasks at once: the ones that exist."""
        ...


class ReminderLedger(Protocol):
    """What should fire when, and which firings were claimed, sent or skipped (workers.reminders).
    Each batch form does what its single form does for every item, in one read or transaction."""

    async def for_task(self, user_id: str, task_id: int) -> dict[str, ScheduledReminder]: ...

    async def for_tasks(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, ScheduledReminder]]:
        """`for_task` for many tasks (only the tasks that have reminders)."""
        ...

    async def get(self, job_name: str) -> ScheduledReminder | None: ...

    async def get_many(self, job_names: list[str]) -> dict[str, ScheduledReminder]:
        """`get` for many jobs (those that exist)."""
        ...

    async def put(self, reminder: ScheduledReminder) -> None: ...

    async def put_many(self, reminders: list[ScheduledReminder]) -> None: ...

    async def remove(self, job_names: list[str]) -> None: ...

    async def overdue(
        self, *, fired_before: datetime, lease_expired_before: datetime, limit: int
    ) -> list[ScheduledReminder]:
        """Reminders due by `fired_before` that no firing finished or holds a live claim on."""
        ...

    async def claim(self, reminder: ScheduledReminder, *, now: datetime, lease_expired_before: datetime) -> bool: ...

    async def claim_many(
        self, reminders: list[ScheduledReminder], *, now: datetime, lease_expired_before: datetime
    ) -> set[str]:
        """`claim` for many firings: the job names claimed now."""
        ...

    async def finish(self, reminder: ScheduledReminder, state: Literal["sent", "skipped"], at: datetime) -> None: ...

    async def finish_many(
        self, reminders: list[ScheduledReminder], *, state: Literal["sent", "skipped"], at: datetime
    ) -> None: ...

    async def release(self, reminder: ScheduledReminder) -> None: ...

    async def release_many(self, reminders: list[ScheduledReminder]) -> None: ...

    async def finished(self, reminder: ScheduledReminder) -> bool:
        """Whether this firing was already sent or skipped."""
        ...

    async def finished_many(self, reminders: list[ScheduledReminder]) -> set[str]:
        """The job names among `reminders` whose firing was already sent or skipped."""
        ...


class OccurrenceCreator(Protocol):
    async def create_next(self, completed: Task) -> Task | None:
        """Create (once) the occurrence after `completed`; None when the series has ended.

        Raises Conflict/Unavailable when it may be retried, InvalidArgument when it never will."""
        ...

    async def create_next_many(self, completed: Sequence[Task]) -> list[Task | None]:
        """`create_next` for each of `completed`, in order. Raises what the first failing item
        raised; what the others created may or may not be kept (in-process: none, in one unit of
        work), which is harmless because creating an occurrence is idempotent per series and
        due date, so handling the batch again one by one creates each successor once."""
        ...
