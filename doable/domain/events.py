"""Task events: the original specification's Task Event plus event_id and trace_id."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from doable.domain.task import Task


class EventType(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    COMPLETED = "completed"
    REOPENED = "reopened"
    DELETED = "deleted"


class TaskEvent(BaseModel):
    """`event_type, task_id, task_data, user_id, timestamp` exactly as the spec shapes them."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: EventType
    task_id: int
    task_data: dict[str, Any]
    user_id: str
    timestamp: datetime
    trace_id: str | None = None
    # Who made the change when it was not the user directly ("agent": through the MCP tools),
    # and why, when it was not a plain edit ("undo", "bulk", "skip").
    actor: str | None = None
    cause: str | None = None

    @classmethod
    def of(
        cls,
        event_type: EventType,
        task: Task,
        *,
        at: datetime,
        trace_id: str | None,
        actor: str | None = None,
        cause: str | None = None,
    ) -> TaskEvent:
        return cls(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            task_id=task.task_id,
            task_data=task.to_data(),
            user_id=task.user_id,
            timestamp=at,
            trace_id=trace_id,
            actor=actor,
            cause=cause,
        )

    def task(self) -> Task:
        """The task as it was right after this event (for `deleted`: as it was when deleted)."""
        return Task.model_validate({k: v for k, v in self.task_data.items() if k in Task.model_fields})
