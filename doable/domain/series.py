"""Repeating tasks: the occurrence that follows a completed one, a skipped one, and previews.

With the default anchor ("schedule") the next due date is computed from the completed
occurrence's scheduled due date (never the completion time) with the series' rule on the
user's wall clock, and occurrences already in the past are skipped, so completing a task late
creates one pending occurrence, not a backlog; the skipped ones are reported as missed. With
"completion" the rule restarts on the day the occurrence was completed, at the usual time;
"schedule_if_on_time" uses the schedule when the occurrence was done by its due time and the
completion day when it was late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from doable.domain.clock import localize, start_of_day
from doable.domain.recurrence import count_of, count_through, next_occurrence, occurrences_after
from doable.domain.task import Anchor, Recurrence, Reminder, Task

# A task years overdue would otherwise record thousands of missed occurrences at once.
MAX_MISSED = 100


@dataclass(frozen=True)
class NextOccurrence:
    due_at: datetime
    # The successor's recurrence: unchanged on the schedule, restarted when counted from completion.
    recurrence: Recurrence
    # Scheduled due instants that passed without the series being worked on (oldest first).
    missed: list[datetime] = field(default_factory=list)


def _floor(now: datetime, tz: ZoneInfo, all_day: bool) -> datetime:
    # An all-day occurrence is not in the past until its whole local day has gone.
    return start_of_day(now.astimezone(tz).date(), tz) - timedelta(microseconds=1) if all_day else now


def _missed(task: Task, rec: Recurrence, slot: datetime, before: datetime, tz: ZoneInfo) -> list[datetime]:
    """Scheduled occurrences after `slot` and before `before`, oldest first (at most MAX_MISSED)."""
    found = occurrences_after(
        rec.rule, start=rec.start, after=slot, tz=tz, all_day=task.all_day, limit=MAX_MISSED, prior=rec.prior
    )
    return [o for o in found if o < before]


def _on_time(task: Task, tz: ZoneInfo, done_at: datetime) -> bool:
    if task.due_date is not None:
        return done_at.astimezone(tz).date() <= task.due_date
    return task.due_at is None or done_at <= task.due_at


def plan_next(task: Task, tz: ZoneInfo, now: datetime) -> NextOccurrence | None:
    """What follows the completed occurrence `task`, or None when the series has ended (COUNT/UNTIL)
    or `task` does not repeat."""
    base = task.series_base()
    rec = base.recurrence
    if rec is None or base.due_at is None:
        return None
    slot = base.due_at
    done_at = task.completed_at or now
    anchor = rec.anchor
    if anchor is Anchor.SCHEDULE_IF_ON_TIME:
        anchor = Anchor.SCHEDULE if _on_time(task, tz, done_at) else Anchor.COMPLETION
    if anchor is Anchor.SCHEDULE:
        after = max(slot, _floor(now, tz, base.all_day))
        due = next_occurrence(rec.rule, start=rec.start, after=after, tz=tz, all_day=base.all_day, prior=rec.prior)
        if due is None:
            return None
        return NextOccurrence(due_at=due, recurrence=rec, missed=_missed(base, rec, slot, due, tz))
    # From completion: the rule restarts on the completion day at the occurrence's usual time.
    local_slot = slot.astimezone(tz)
    day = done_at.astimezone(tz).date()
    restart = start_of_day(day, tz) if base.all_day else localize(datetime.combine(day, local_slot.time()), tz)
    prior = rec.prior
    count = count_of(rec.rule)
    if count is not None:
        prior += max(1, count_through(rec.rule, start=rec.start, until=slot, tz=tz, all_day=base.all_day))
        if prior >= count:
            return None
    after = restart if base.all_day else max(restart, done_at)
    # The restarted rule's own start is not an occurrence (the completion day is not one), so
    # COUNT is applied above and not to the restarted rule.
    due = next_occurrence(rec.rule, start=restart, after=after, tz=tz, all_day=base.all_day)
    if due is None:
        return None
    return NextOccurrence(due_at=due, recurrence=rec.model_copy(update={"start": due, "prior": prior}))


def next_due(task: Task, tz: ZoneInfo, now: datetime) -> datetime | None:
    """Due instant of the occurrence after `task`, or None when the series has ended (COUNT/UNTIL)
    or `task` does not repeat."""
    plan = plan_next(task, tz, now)
    return plan.due_at if plan else None


def plan_skip(task: Task, tz: ZoneInfo, now: datetime) -> NextOccurrence | None:
    """Where a skipped occurrence moves: the series' next scheduled date that is not yet past
    (None when there is none). Dates passed on the way are reported as missed."""
    base = task.series_base()
    rec = base.recurrence
    if rec is None or base.due_at is None:
        return None
    slot = base.due_at
    after = max(slot, _floor(now, tz, base.all_day))
    due = next_occurrence(rec.rule, start=rec.start, after=after, tz=tz, all_day=base.all_day, prior=rec.prior)
    if due is None:
        return None
    return NextOccurrence(due_at=due, recurrence=rec, missed=_missed(base, rec, slot, due, tz))


def upcoming(task: Task, tz: ZoneInfo, count: int) -> list[datetime]:
    """The task's due instant and the series' following ones (as if each is done on time)."""
    if task.due_at is None:
        return []
    base = task.series_base()
    rec = base.recurrence
    if rec is None or base.due_at is None or count <= 1:
        return [task.due_at]
    rest = occurrences_after(
        rec.rule, start=rec.start, after=base.due_at, tz=tz, all_day=base.all_day, limit=count - 1, prior=rec.prior
    )
    return [task.due_at, *rest]


def moved(task: Task, due_at: datetime, tz: ZoneInfo) -> dict[str, object]:
    """The fields of `task` (as the series has it) moved to `due_at`: due date, and absolute
    reminders shifted to keep their distance to it."""
    base = task.series_base()
    assert base.due_at is not None
    shift = due_at - base.due_at
    return {
        "due_at": due_at,
        "due_date": due_at.astimezone(tz).date() if base.all_day else None,
        "reminders": tuple(Reminder(at=r.at + shift) if r.at is not None else r for r in base.reminders),
    }


def successor(
    task: Task,
    *,
    task_id: int,
    due_at: datetime,
    tz: ZoneInfo,
    now: datetime,
    recurrence: Recurrence | None = None,
) -> Task:
    """The next occurrence of `task`: same title, description, priority, tags, reminders and rule
    (the series' values where this occurrence changed them alone).

    Offset reminders carry over as they are; absolute ones move with the due date so they keep
    their distance to it."""
    base = task.series_base()
    assert base.due_at is not None and base.recurrence is not None
    return Task(
        user_id=base.user_id,
        task_id=task_id,
        title=base.title,
        description=base.description,
        priority=base.priority,
        tags=base.tags,
        recurrence=recurrence or base.recurrence,
        series_id=base.series_id,
        created_at=now,
        updated_at=now,
        **moved(base, due_at, tz),  # type: ignore[arg-type]
    )
