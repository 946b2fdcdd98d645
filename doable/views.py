"""Output shapes shared by MCP tools and REST: what users and models read.

Times are shown in the user's timezone (with offset), all-day dues as plain dates,
so a model never converts UTC to "today" itself.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from doable.domain import recurrence as rec
from doable.domain.clock import LocalCalendar
from doable.domain.query import TaskPage
from doable.domain.task import Task


class ReminderView(BaseModel):
    at: str | None = None
    minutes_before: int | None = None
    fires_at: str | None = None


class RecurrenceView(BaseModel):
    rule: str
    summary: str


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
    """The spec's `{task_id, status, title}` plus the whole task."""

    task_id: int
    status: Literal["created", "updated", "completed", "reopened", "deleted", "found"]
    title: str
    task: TaskView


class TaskListView(BaseModel):
    tasks: list[TaskView]
    query: str | None = None
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


def local(instant: datetime | None, tz: ZoneInfo) -> str | None:
    return instant.astimezone(tz).isoformat(timespec="seconds") if instant else None


def task_view(task: Task, tz: ZoneInfo) -> TaskView:
    due = task.due_date.isoformat() if task.due_date else local(task.due_at, tz)
    return TaskView(
        id=task.task_id,
        title=task.title,
        completed=task.completed,
        description=task.description,
        priority=task.priority.value,
        tags=list(task.tags),
        due=due,
        all_day=task.all_day,
        reminders=[
            ReminderView(
                at=local(r.at, tz), minutes_before=r.minutes_before, fires_at=local(r.fire_at(task.due_at), tz)
            )
            for r in task.reminders
        ],
        recurrence=RecurrenceView(rule=task.recurrence.rule, summary=rec.describe(task.recurrence.rule))
        if task.recurrence
        else None,
        series_id=task.series_id,
        completed_at=local(task.completed_at, tz),
        created_at=local(task.created_at, tz) or "",
        updated_at=local(task.updated_at, tz) or "",
    )


def task_result(task: Task, status: str, tz: ZoneInfo) -> TaskResult:
    return TaskResult(task_id=task.task_id, status=status, title=task.title, task=task_view(task, tz))  # type: ignore[arg-type]


def list_view(page: TaskPage, cal: LocalCalendar) -> TaskListView:
    return TaskListView(
        tasks=[task_view(t, cal.tz) for t in page.tasks],
        query=page.query,
        total=page.total,
        returned=len(page.tasks),
        next_cursor=page.next_cursor,
        truncated=page.next_cursor is not None,
        timezone=cal.tz.key,
        now=local(cal.now, cal.tz) or "",
        today=cal.today,
        week_start=cal.week_start,
    )


def profile_view(user_id: str, cal: LocalCalendar) -> ProfileView:
    return ProfileView(user_id=user_id, timezone=cal.tz.key, now=local(cal.now, cal.tz) or "", today=cal.today)
