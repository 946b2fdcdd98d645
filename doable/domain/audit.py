"""The audit log's entry: one task event as the history shows it, with the fields it changed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from doable.domain.events import EventType, TaskEvent

# The fields a user changes; bookkeeping (version, updated_at, completed_at) is left out.
TRACKED_FIELDS = (
    "title",
    "description",
    "priority",
    "tags",
    "due_at",
    "due_date",
    "reminders",
    "recurrence",
    "completed",
)


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int | None = None
    event_id: str
    user_id: str
    task_id: int
    event_type: EventType
    occurred_at: datetime
    title: str
    changed: tuple[str, ...] = ()
    task_data: dict[str, Any]
    # Who made the change when not the user directly ("agent"), and why ("undo", "bulk", "skip").
    actor: str | None = None
    cause: str | None = None

    @classmethod
    def of(cls, event: TaskEvent, previous: dict[str, Any] | None) -> AuditEntry:
        """An entry for `event`; `previous` is the task's data at its last recorded event."""
        changed = changed_fields(previous, event.task_data) if event.event_type is EventType.UPDATED else ()
        return cls(
            event_id=event.event_id,
            user_id=event.user_id,
            task_id=event.task_id,
            event_type=event.event_type,
            occurred_at=event.timestamp,
            title=str(event.task_data.get("title", "")),
            changed=changed,
            task_data=event.task_data,
            actor=event.actor,
            cause=event.cause,
        )


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any]) -> tuple[str, ...]:
    if before is None:
        return ()
    return tuple(
        f
        for f in TRACKED_FIELDS
        if json.dumps(before.get(f), sort_keys=True) != json.dumps(after.get(f), sort_keys=True)
    )
