"""Task history: the audit worker's append-only log of task events, and the reads REST and MCP make."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from doable.domain.errors import InvalidArgument
from doable.domain.events import EventType, TaskEvent
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.query import TASK_ID_MAX, check_int
from doable.ports.history import AuditStore
from doable.views import local

LIMIT_DEFAULT = 20
LIMIT_MAX = 200
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


class History:
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def list(
        self, user_id: str, *, task_id: int | None = None, limit: int | None = None, before_id: int | None = None
    ) -> list[AuditEntry]:
        """Recent activity of the user, or one task's whole story; newest first."""
        size = LIMIT_DEFAULT if limit is None else limit
        if not 1 <= size <= LIMIT_MAX:
            raise InvalidArgument("limit", f"must be between 1 and {LIMIT_MAX}")
        if task_id is not None:
            check_int(task_id, "task_id", 1, TASK_ID_MAX)
        if before_id is not None:
            check_int(before_id, "before")
        return await self._store.history(user_id, task_id=task_id, limit=size, before_id=before_id)


class HistoryEntryView(BaseModel):
    id: int
    at: str
    event: str
    task_id: int
    title: str
    changed: list[str] = []
    by: str | None = None
    cause: str | None = None


class OccurrenceView(BaseModel):
    """What became of one scheduled date of a repeating series."""

    due: str
    status: str
    task_id: int
    at: str
    moved_to: str | None = None


class HistoryView(BaseModel):
    entries: list[HistoryEntryView]
    # Pass as `before` to read further back.
    next_before: int | None
    # For one task of a repeating series: each occurrence's fate, latest first.
    occurrences: list[OccurrenceView] | None = None


def occurrence_view(record: OccurrenceRecord, tz: ZoneInfo) -> OccurrenceView:
    def when(instant: datetime, day: date | None) -> str:
        return day.isoformat() if day is not None else local(instant, tz) or ""

    return OccurrenceView(
        due=when(record.due_at, record.due_date),
        status=record.status.value,
        task_id=record.task_id,
        at=local(record.at, tz) or "",
        moved_to=when(record.moved_to, record.moved_to_date) if record.moved_to else None,
    )


def history_view(entries: list[AuditEntry], tz: ZoneInfo, limit: int | None) -> HistoryView:
    views = [
        HistoryEntryView(
            id=e.id or 0,
            at=local(e.occurred_at, tz) or "",
            event=e.event_type.value,
            task_id=e.task_id,
            title=e.title,
            changed=list(e.changed),
            by=e.actor,
            cause=e.cause,
        )
        for e in entries
    ]
    full = len(entries) == (LIMIT_DEFAULT if limit is None else limit)
    return HistoryView(entries=views, next_before=views[-1].id if views and full else None)
