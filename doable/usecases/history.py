"""Task history: the audit worker's append-only log of task events, and the reads REST and MCP make."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from doable.domain.audit import AuditEntry
from doable.domain.errors import InvalidArgument
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.query import TASK_ID_MAX, check_int
from doable.ports.history import AuditStore
from doable.usecases.views import local

LIMIT_DEFAULT = 20
LIMIT_MAX = 200
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
