"""Output shapes shared by MCP tools and REST: what users and models read.

Times are shown in the user's timezone (with offset), all-day dues as plain dates,
so a model never converts UTC to "today" itself.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from doable.domain import recurrence as rec
from doable.domain.clock import LocalCalendar
from doable.domain.errors import InvalidArgument
from doable.domain.query import TaskPage
from doable.domain.series import upcoming
from doable.domain.task import Task


class ReminderView(BaseModel):
    at: str | None = None
    minutes_before: int | None = None
    fires_at: str | None = None


class RecurrenceView(BaseModel):
    rule: str
    summary: str
    anchor: str = "schedule"


class TaskView(BaseModel):
    id: int
    title: str
    completed: bool
    description: str = ""
    priority: str = "none"
    tags: list[str] = []
    due: str | None = None
    all_day: bool = False
    reminders: list[ReminderView] = []
    recurrence: RecurrenceView | None = None
    series_id: str | None = None
    completed_at: str | None = None
    created_at: str
    updated_at: str


class TaskResult(BaseModel):
    """The spec's `{task_id, status, title}` plus the whole task, and the token that undoes the change."""

    task_id: int
    status: Literal["created", "updated", "completed", "reopened", "deleted", "found", "skipped", "preview"]
    title: str
    task: TaskView
    undo: str | None = None
    # A preview: the due dates of the task and the occurrences that would follow (nothing saved).
    occurrences: list[str] | None = None


class TaskItem(BaseModel):
    """A task in a list: TaskView's fields; with `fields`, only those (and `id`) are present."""

    id: int
    title: str | None = None
    completed: bool | None = None
    description: str | None = None
    priority: str | None = None
    tags: list[str] | None = None
    due: str | None = None
    all_day: bool | None = None
    reminders: list[ReminderView] | None = None
    recurrence: RecurrenceView | None = None
    series_id: str | None = None
    completed_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}


# The fields a list item can be cut down to (`fields`); `id` is always included.
LIST_FIELDS = tuple(TaskView.model_fields)


class TaskListView(BaseModel):
    tasks: list[TaskItem]
    query: str | None = None
    # Set when list items were shortened (descriptions cut): how to see them whole.
    note: str | None = None
    total: int
    returned: int
    next_cursor: str | None
    truncated: bool
    timezone: str
    now: str
    today: date
    week_start: date


class ProfileView(BaseModel):
    user_id: str
    timezone: str
    now: str
    today: date
    undo: str | None = None


def local(instant: datetime | None, tz: ZoneInfo) -> str | None:
    return instant.astimezone(tz).isoformat(timespec="seconds") if instant else None


def task_fields(task: Task, tz: ZoneInfo) -> dict[str, Any]:
    """TaskView's fields as JSON values: what `task_view` validates, and what a list's items are
    cut from as they are (a model per task, then its dump, were half of a list's time)."""
    return {
        "id": task.task_id,
        "title": task.title,
        "completed": task.completed,
        "description": task.description,
        "priority": task.priority.value,
        "tags": list(task.tags),
        "due": task.due_date.isoformat() if task.due_date else local(task.due_at, tz),
        "all_day": task.all_day,
        "reminders": [
            {"at": local(r.at, tz), "minutes_before": r.minutes_before, "fires_at": local(r.fire_at(task.due_at), tz)}
            for r in task.reminders
        ],
        "recurrence": {
            "rule": task.recurrence.rule,
            "summary": rec.describe(task.recurrence.rule),
            "anchor": task.recurrence.anchor.value,
        }
        if task.recurrence
        else None,
        "series_id": task.series_id,
        "completed_at": local(task.completed_at, tz),
        "created_at": local(task.created_at, tz) or "",
        "updated_at": local(task.updated_at, tz) or "",
    }


def task_view(task: Task, tz: ZoneInfo) -> TaskView:
    return TaskView.model_validate(task_fields(task, tz))


def due_text(instant: datetime, all_day: bool, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).date().isoformat() if all_day else local(instant, tz) or ""


def task_result(
    task: Task, status: str, tz: ZoneInfo, *, undo: str | None = None, preview: int | None = None
) -> TaskResult:
    """The result of a tool call on one task; `preview` adds that many upcoming due dates."""
    occurrences = [due_text(d, task.all_day, tz) for d in upcoming(task, tz, preview)] if preview else None
    return TaskResult(
        task_id=task.task_id,
        status=status,
        title=task.title,
        task=task_view(task, tz),
        undo=undo,
        occurrences=occurrences,
    )


def _item(task: Task, tz: ZoneInfo, keep: set[str] | None, description_max: int | None) -> tuple[dict[str, Any], bool]:
    item = task_fields(task, tz)
    description: str = item["description"]
    cut = False
    if description_max is not None and len(description) > description_max:
        item["description"] = description[: description_max - 1].rstrip() + "…"
        cut = True
    if keep is not None:
        item = {k: v for k, v in item.items() if k in keep}
    return item, cut and (keep is None or "description" in keep)


def check_fields(fields: list[str] | None) -> list[str] | None:
    if fields is None:
        return None
    unknown = sorted(set(fields) - set(LIST_FIELDS))
    if not fields:
        raise InvalidArgument("fields", f"must name at least one of {', '.join(LIST_FIELDS)}")
    if unknown:
        raise InvalidArgument("fields", f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(LIST_FIELDS)}")
    return fields


def list_page(
    page: TaskPage, cal: LocalCalendar, *, fields: list[str] | None = None, description_max: int | None = None
) -> dict[str, Any]:
    """A page of tasks in the user's timezone as TaskListView's JSON (sent as it is: MCP's SDK and
    REST's response model check it against TaskListView); items cut to `fields`, descriptions to
    `description_max`."""
    chosen = check_fields(fields)
    keep = {"id", *chosen} if chosen else None
    items = [_item(t, cal.tz, keep, description_max) for t in page.tasks]
    note = None
    if any(cut for _, cut in items):
        note = f"descriptions longer than {description_max} characters are cut (…); get_task shows one whole"
    return {
        "tasks": [item for item, _ in items],
        "query": page.query,
        "note": note,
        "total": page.total,
        "returned": len(page.tasks),
        "next_cursor": page.next_cursor,
        "truncated": page.next_cursor is not None,
        "timezone": cal.tz.key,
        "now": local(cal.now, cal.tz) or "",
        "today": cal.today.isoformat(),
        "week_start": cal.week_start.isoformat(),
    }


def profile_view(user_id: str, cal: LocalCalendar) -> ProfileView:
    return ProfileView(user_id=user_id, timezone=cal.tz.key, now=local(cal.now, cal.tz) or "", today=cal.today)
