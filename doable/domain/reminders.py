"""Reminders as the workers handle them: what a task wants scheduled, the job names, and the
Reminder Event of the original specification (plus `event_id`).

Pure rules, no I/O: the reminders worker diffs `wanted_reminders` against what it scheduled.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from doable.domain.query import micros
from doable.domain.task import Task

# Namespace of the deterministic Reminder Event ids: a resend of the same reminder (lost
# acknowledgement, sweeper after a crash) carries the same id, so consumers deduplicate it.
_EVENT_NAMESPACE = uuid.UUID("6f1c2a0e-3b7d-4a57-9a43-2d0c8f6e1b55")


def job_name(user_id: str, task_id: int, reminder_key: str) -> str:
    """A job name unique per (user, task, reminder) and valid everywhere a name goes (Dapr job
    names, URL paths): lowercase letters, digits and hyphens only. The user id is hashed because
    it may hold characters like `@`, `|` or `:`."""
    user = hashlib.sha256(user_id.encode()).hexdigest()[:16]
    return f"rem-{user}-{task_id}-{reminder_key.lower()}"


@dataclass(frozen=True)
class WantedReminder:
    job_name: str
    reminder_key: str
    fire_at: datetime


def wanted_reminders(task: Task) -> dict[str, WantedReminder]:
    """The reminders that should be pending for `task`, by job name. None once it is completed."""
    if task.completed:
        return {}
    wanted: dict[str, WantedReminder] = {}
    for reminder in task.reminders:
        fire_at = reminder.fire_at(task.due_at)
        if fire_at is not None:
            name = job_name(task.user_id, task.task_id, reminder.key)
            wanted[name] = WantedReminder(job_name=name, reminder_key=reminder.key, fire_at=fire_at)
    return wanted


def still_wanted(task: Task | None, name: str, fire_at: datetime) -> bool:
    """Whether the reminder `name` due at `fire_at` should still go out for the task as it is now."""
    if task is None:
        return False
    wanted = wanted_reminders(task).get(name)
    return wanted is not None and wanted.fire_at == fire_at


def reminder_event_id(name: str, fire_at: datetime) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{name}|{micros(fire_at)}"))


class ReminderEvent(BaseModel):
    """`task_id, title, due_at, remind_at, user_id` as the specification shapes them, plus `event_id`."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    task_id: int
    title: str
    due_at: datetime | None
    remind_at: datetime
    user_id: str

    @classmethod
    def of(cls, task: Task, name: str, fire_at: datetime) -> ReminderEvent:
        return cls(
            event_id=reminder_event_id(name, fire_at),
            task_id=task.task_id,
            title=task.title,
            due_at=task.due_at,
            remind_at=fire_at,
            user_id=task.user_id,
        )


@dataclass(frozen=True)
class ScheduledReminder:
    """A reminder the reminders worker keeps a job for."""

    job_name: str
    user_id: str
    task_id: int
    reminder_key: str
    fire_at: datetime
