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
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from doable.domain.clock import localize, start_of_day
from doable.domain.recurrence import (
    Occurrence,
    count_of,
    count_through,
    next_after,
    occurrences,
    occurrences_after,
    without_count,
)
from doable.domain.task import Anchor, Recurrence, Reminder, Task

# A task years overdue would otherwise record thousands of missed occurrences at once.
MAX_MISSED = 100


@dataclass(frozen=True)
class NextOccurrence:
    # None when the series has ended (COUNT/UNTIL); `missed` may still hold dates it passed.
    due_at: datetime | None
    # The successor's recurrence: unchanged on the schedule, restarted when counted from completion.
    recurrence: Recurrence
    # Scheduled due instants that passed without the series being worked on (oldest first).
    missed: list[datetime] = field(default_factory=list)


Point = datetime | date


def _point(task: Task, tz: ZoneInfo) -> Point:
    """Where an occurrence sits in its series: its date when all-day (a date stays that date
    whatever the user's timezone), else its due instant."""
    if task.due_date is not None:
        return task.due_date
    assert task.due_at is not None
    return task.due_at


def _floor(now: datetime, tz: ZoneInfo, all_day: bool) -> Point:
    # An all-day occurrence is not in the past until its whole local day has gone.
    return now.astimezone(tz).date() - timedelta(days=1) if all_day else now


def _series(rec: Recurrence, task: Task, tz: ZoneInfo) -> dict[str, object]:
    return {"start": rec.start, "tz": tz, "all_day": task.all_day, "prior": rec.prior, "wall": rec.wall}


def _passed(base: Task, rec: Recurrence, slot: Point, through: Point, tz: ZoneInfo) -> list[datetime]:
    """Scheduled occurrences after `slot` up to and including `through` (dates for an all-day
    series, instants otherwise), oldest first (at most MAX_MISSED)."""
    found: list[datetime] = []
    for occ in occurrences(rec.rule, after=slot, **_series(rec, base, tz)):  # type: ignore[arg-type]
        if (occ.day > through) if base.all_day else (occ.at > through):
            break
        found.append(occ.at)
        if len(found) >= MAX_MISSED:
            break
    return found


def _on_time(task: Task, tz: ZoneInfo, done_at: datetime) -> bool:
    if task.due_date is not None:
        return done_at.astimezone(tz).date() <= task.due_date
    return task.due_at is None or done_at <= task.due_at


def _scheduled(base: Task, rec: Recurrence, tz: ZoneInfo, now: datetime) -> NextOccurrence:
    """The series' next date not yet past, and the ones passed on the way (also when it has ended)."""
    slot = _point(base, tz)
    floor = _floor(now, tz, base.all_day)
    after = max(slot, floor)
    nxt = next_after(rec.rule, after=after, **_series(rec, base, tz))  # type: ignore[arg-type]
    return NextOccurrence(due_at=nxt.at if nxt else None, recurrence=rec, missed=_passed(base, rec, slot, after, tz))


def occurrence_wall(task: Task, tz: ZoneInfo) -> datetime | None:
    """This occurrence's requested wall-clock time, when the series knows it: its date for an
    all-day task; for a timed one the series' requested time of day if that is what its due
    instant stands for (02:30 on a spring-forward day, due at 03:30). None: read the instant."""
    if task.due_date is not None:
        return datetime.combine(task.due_date, time())
    rec = task.recurrence
    if rec is None or rec.wall is None or task.due_at is None:
        return None
    local = task.due_at.astimezone(tz)
    for day in (local.date(), local.date() - timedelta(days=1)):
        candidate = datetime.combine(day, rec.wall.time())
        if localize(candidate, tz) == task.due_at:
            return candidate
    return None


def plan_next(task: Task, tz: ZoneInfo, now: datetime) -> NextOccurrence | None:
    """What follows the completed occurrence `task` (None when `task` does not repeat). Its
    `due_at` is None when the series has ended (COUNT/UNTIL); the dates it passed are still in
    `missed`, so a series that ends while overdue records them too."""
    base = task.series_base()
    rec = base.recurrence
    if rec is None or base.due_at is None:
        return None
    done_at = task.completed_at or now
    anchor = rec.anchor
    if anchor is Anchor.SCHEDULE_IF_ON_TIME:
        anchor = Anchor.SCHEDULE if _on_time(task, tz, done_at) else Anchor.COMPLETION
    if anchor is Anchor.SCHEDULE:
        return _scheduled(base, rec, tz, now)
    # From completion: the rule restarts on the completion day at the occurrence's usual time.
    slot = _point(base, tz)
    day = done_at.astimezone(tz).date()
    if base.all_day:
        restart_wall = datetime.combine(day, time())
        restart = start_of_day(day, tz)
    else:
        usual = occurrence_wall(base, tz) or base.due_at.astimezone(tz).replace(tzinfo=None)
        restart_wall = datetime.combine(day, usual.time())
        restart = localize(restart_wall, tz)
    prior = rec.prior
    count = count_of(rec.rule)
    if count is not None:
        through = count_through(rec.rule, start=rec.start, until=slot, tz=tz, all_day=base.all_day, wall=rec.wall)
        prior += max(1, through)
        if prior >= count:
            return NextOccurrence(due_at=None, recurrence=rec)
    after: Point = day if base.all_day else max(restart, done_at)
    # The restarted rule's own start is not an occurrence (the completion day is not one), so
    # COUNT is applied above and not to the restarted rule.
    nxt: Occurrence | None = next_after(
        without_count(rec.rule), start=restart, after=after, tz=tz, all_day=base.all_day, wall=restart_wall
    )
    if nxt is None:
        return NextOccurrence(due_at=None, recurrence=rec)
    restarted = rec.model_copy(update={"start": nxt.at, "prior": prior, "wall": nxt.wall})
    return NextOccurrence(due_at=nxt.at, recurrence=restarted)


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
    plan = _scheduled(base, rec, tz, now)
    return plan if plan.due_at is not None else None


def upcoming(task: Task, tz: ZoneInfo, count: int) -> list[datetime]:
    """The task's due instant and the series' following ones (as if each is done on time): the
    very dates completing each in turn creates (the same sequence, `recurrence.occurrences`)."""
    if task.due_at is None:
        return []
    first = start_of_day(task.due_date, tz) if task.due_date is not None else task.due_at
    base = task.series_base()
    rec = base.recurrence
    if rec is None or base.due_at is None or count <= 1:
        return [first]
    rest = occurrences_after(rec.rule, after=_point(base, tz), limit=count - 1, **_series(rec, base, tz))  # type: ignore[arg-type]
    return [first, *rest]


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
        **moved(base, due_at, tz),
    )
