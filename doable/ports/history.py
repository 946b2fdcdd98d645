"""The audit port: the task history the audit worker appends to and REST and MCP read.

Adapters: `doable.adapters.sql.audit` (SQL), `doable.adapters.dapr.audit` (Dapr state). The entry
record and the reads are in `doable.usecases.history`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from doable.domain.events import TaskEvent

if TYPE_CHECKING:
    # Only for annotations: doable.usecases.history (the use cases) imports this port at run time.
    from doable.domain.audit import AuditEntry


class AuditStore(Protocol):
    async def append(self, entry: AuditEntry) -> bool:
        """Record `entry` once (keyed by its event id); False when it was already recorded."""
        ...

    async def latest(self, user_id: str, task_id: int) -> AuditEntry | None: ...

    async def record_events(self, events: list[TaskEvent]) -> list[str]:
        """Audit a batch in order, each event once (a repeat, in the batch or later, adds nothing);
        the ids of the events recorded now."""
        ...

    async def history(
        self, user_id: str, *, task_id: int | None, limit: int, before_id: int | None
    ) -> list[AuditEntry]:
        """The user's entries (one task's when `task_id`), newest first, ids below `before_id`."""
        ...
