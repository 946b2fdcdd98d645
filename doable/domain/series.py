"""Repeating tasks: the occurrence that follows a completed one.

The next due date is computed from the completed occurrence's due date (never the completion
time) with the series' rule on the user's wall clock, and occurrences already in the past are
skipped, so completing a task late creates one pending occurrence, not a backlog.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from doable.domain.clock import start_of_day
from doable.domain.recurrence import next_occurrence
from doable.domain.task import Reminder, Task


def next_due(task: Task, tz: ZoneInfo, now: datetime) -> datetime | None:
    """Due instant of the occurrence after `task`, or None when the series has ended (COUNT/UNTIL)
    or `task` does not repeat."""
    if task.recurrence is None or task.due_at is None:
        return None
    if task.all_day:
        # An all-day occurrence is not in the past until its whole local day has gone.
        floor = start_of_day(now.astimezone(tz).date(), tz) - timedelta(microseconds=1)
    else:
        floor = now
    after = max(task.due_at, floor)
    return next_occurrence(task.recurrence.rule, start=task.recurrence.start, after=after, tz=tz, all_day=task.all_day)


def successor(task: Task, *, task_id: int, due_at: datetime, tz: ZoneInfo, now: datetime) -> Task:
    """The next occurrence of `task`: same title, description, priority, tags, reminders and rule.

    Offset reminders carry over as they are; absolute ones move with the due date so they keep
    their distance to it."""
    assert task.due_at is not None and task.recurrence is not None
    shift = due_at - task.due_at
    reminders = tuple(Reminder(at=r.at + shift) if r.at is not None else r for r in task.reminders)
    return Task(
        user_id=task.user_id,
        task_id=task_id,
        title=task.title,
        description=task.description,
        priority=task.priority,
        tags=task.tags,
        due_at=due_at,
        due_date=due_at.astimezone(tz).date() if task.all_day else None,
        reminders=reminders,
        recurrence=task.recurrence,
        series_id=task.series_id,
        created_at=now,
        updated_at=now,
    )
