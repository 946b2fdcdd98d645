"""Edits of a repeating task with a scope: this occurrence, this and the following ones, or all.

- "this": only this occurrence changes. The series keeps its own values (kept on the task as
  `series_values`), so the next occurrence is scheduled and filled in as if nothing happened.
- "future" (the default): this occurrence and the ones after it. A new due date or rule
  re-anchors the series here (COUNT counts from here).
- "all": every occurrence of the series, completed ones included (title, description,
  priority, tags, offset reminders, rule). A new due time shifts the series' start by the same
  amount, and a new rule keeps the series' original start (COUNT still counts from there).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from doable.domain import recurrence as rec
from doable.domain.clock import localize, start_of_day
from doable.domain.errors import InvalidArgument
from doable.domain.occurrences import OccurrenceRecord, OccurrenceStatus
from doable.domain.query import LIMIT_MAX, Position, SortField, TaskFilter, TaskQuery
from doable.domain.series import occurrence_wall
from doable.domain.task import Anchor, Recurrence, SeriesValues, Task
from doable.ports import UnitOfWork
from doable.usecases.inputs import RecurrenceIn
from doable.usecases.undo_log import UndoLog

Scope = Literal["this", "future", "all"]
# Input field names -> the task fields they set.
_FIELDS = {
    "title": ("title",),
    "description": ("description",),
    "priority": ("priority",),
    "tags": ("tags",),
    "reminders": ("reminders",),
    "due": ("due_at", "due_date"),
}
_SPREAD = ("title", "description", "priority", "tags")


def _task_fields(given: set[str]) -> list[str]:
    return [f for name in given for f in _FIELDS.get(name, ())]


def _without(values: SeriesValues | None, fields: list[str]) -> SeriesValues | None:
    if values is None:
        return None
    kept = [f for f in values.fields if f not in fields]
    if not kept:
        return None
    return SeriesValues(fields=tuple(kept), **{f: getattr(values, f) for f in kept})


def _wall(instant: datetime, tz: ZoneInfo, all_day: bool) -> datetime:
    wall = instant.astimezone(tz).replace(tzinfo=None)
    return datetime.combine(wall.date(), time()) if all_day else wall


def apply_scope(before: Task, after: Task, scope: Scope, given: set[str], tz: ZoneInfo) -> Task:
    """`after` (the edit as applied to this occurrence) adjusted for `scope`."""
    if before.recurrence is None:
        return after
    if after.recurrence is None:
        # No longer repeating: nothing of the series is left to keep.
        return after.model_copy(update={"series_values": None})
    fields = _task_fields(given)
    if scope == "this":
        values = before.series_values
        kept = list(values.fields) if values else []
        data: dict[str, Any] = {f: getattr(values, f) for f in kept} if values else {}
        for f in fields:
            if f not in kept:
                kept.append(f)
                data[f] = getattr(before, f)
        return after.model_copy(
            update={"recurrence": before.recurrence, "series_values": SeriesValues(fields=tuple(kept), **data)}
        )
    update: dict[str, Any] = {"series_values": _without(after.series_values, fields)}
    if scope == "all" and after.recurrence is not None:
        rule = after.recurrence if "recurrence" in given else before.recurrence
        start, prior, wall = before.recurrence.start, before.recurrence.prior, before.recurrence.wall
        base = before.series_base()
        if "due" in given and after.due_at is not None and base.due_at is not None:
            # The series moves by as much as this occurrence did, on the wall clock (by dates when all-day).
            all_day = after.due_date is not None
            was = occurrence_wall(base, tz) or _wall(base.due_at, tz, all_day)
            now = occurrence_wall(after, tz) or _wall(after.due_at, tz, all_day)
            first = rec.series_start(start, tz, all_day, wall)
            wall = first + (now - was)
            start = start_of_day(wall.date(), tz) if all_day else localize(wall, tz)
        update["recurrence"] = rule.model_copy(update={"start": start, "prior": prior, "wall": wall})
    return after.model_copy(update=update)


def spread(edited: Task, given: set[str], other: Task, now: datetime) -> Task | None:
    """The series-wide part of an edit with scope "all", applied to another occurrence (None: no change)."""
    update: dict[str, Any] = {f: getattr(edited, f) for f in _SPREAD if f in given}
    if "reminders" in given and other.due_at is not None:
        # An absolute reminder belongs to one date; offsets fit every occurrence.
        update["reminders"] = tuple(r for r in edited.reminders if r.minutes_before is not None)
    if "recurrence" in given or "due" in given:
        update["recurrence"] = edited.recurrence
    update["series_values"] = _without(other.series_values, _task_fields(given))
    if all(getattr(other, k) == v for k, v in update.items()):
        return None
    return other.evolve(**update, updated_at=now)


async def series_tasks(uow: UnitOfWork, user_id: str, series_id: str) -> list[Task]:
    """Every task of the series (pending and completed), oldest first."""
    found: list[Task] = []
    query = TaskQuery(filter=TaskFilter(series_id=series_id), sort=SortField.CREATED, descending=False, limit=LIMIT_MAX)
    while True:
        page = await uow.tasks.list(user_id, query)
        found.extend(page.tasks)
        if len(page.tasks) < query.limit:
            return found
        last = page.tasks[-1]
        query = TaskQuery(
            filter=query.filter,
            sort=query.sort,
            descending=False,
            limit=LIMIT_MAX,
            after=Position(value=query.sort_value(last), task_id=last.task_id),
        )


def occurrence_record(
    task: Task,
    status: OccurrenceStatus,
    now: datetime,
    tz: ZoneInfo,
    *,
    due_at: datetime | None = None,
    moved_to: Task | None = None,
) -> OccurrenceRecord:
    """A record of `task`'s occurrence (its scheduled date, or another date `due_at` of its series)."""
    base = task.series_base()
    assert task.series_id is not None and base.due_at is not None
    due = due_at or base.due_at
    # An all-day occurrence is its date (its own, not its instant re-read in today's timezone).
    day = (base.due_date if due_at is None else due.astimezone(tz).date()) if base.all_day else None
    return OccurrenceRecord.new(
        user_id=task.user_id,
        series_id=task.series_id,
        due_at=due,
        due_date=day,
        status=status,
        task_id=task.task_id,
        at=now,
        moved_to=moved_to.due_at if moved_to else None,
        moved_to_date=moved_to.due_date if moved_to else None,
    )


async def spread_all(
    uow: UnitOfWork, series_id: str, edited: Task, given: set[str], now: datetime, undo: UndoLog
) -> list[Task]:
    """An edit with scope "all": the series-wide fields onto every other occurrence (stored, and
    in the undo record); the occurrences changed, for their events."""
    changed: list[Task] = []
    for other in await series_tasks(uow, edited.user_id, series_id):
        if other.task_id == edited.task_id:
            continue
        updated = spread(edited, given, other, now)
        if updated is not None:
            await uow.tasks.update(updated)
            undo.task(other, updated)
            changed.append(updated)
    return changed


async def record_completion(
    uow: UnitOfWork, task: Task, done: bool, now: datetime, tz: ZoneInfo, undo: UndoLog
) -> None:
    """The occurrence record of completing `task` (or, when reopened, its removal)."""
    assert task.series_id is not None
    if done:
        record = occurrence_record(task, OccurrenceStatus.COMPLETED, now, tz)
        await uow.occurrences.add([record])
        undo.records_added([record])
        return
    slot = task.series_base().due_at
    gone = [
        r
        for r in await uow.occurrences.list(task.user_id, task.series_id, limit=200)
        if r.status is OccurrenceStatus.COMPLETED and r.task_id == task.task_id and r.due_at == slot
    ]
    await uow.occurrences.remove(task.user_id, task.series_id, [r.id for r in gone])
    undo.records_removed(gone)


def build_recurrence(
    given: RecurrenceIn | str,
    due_at: datetime,
    tz: ZoneInfo | None,
    *,
    all_day: bool = False,
    current: Recurrence | None = None,
    wall: datetime | None = None,
) -> Recurrence:
    """A Recurrence from a preset/RRULE string or the typed object, starting at `due_at`; without
    an anchor of its own it keeps `current`'s (the task's recurrence before an update)."""
    spec = given if isinstance(given, RecurrenceIn) else RecurrenceIn(rule=given)
    if spec.count is not None and not 1 <= spec.count <= rec.MAX_COUNT:
        raise InvalidArgument("recurrence.count", f"must be between 1 and {rec.MAX_COUNT}")
    if (spec.rule is None) == (spec.frequency is None):
        raise InvalidArgument("recurrence", "needs exactly one of 'rule' (preset or RRULE) or 'frequency'")
    parts = (spec.interval, spec.by_day, spec.by_month_day, spec.by_set_pos)
    if spec.rule is not None and any(p is not None for p in parts):
        raise InvalidArgument("recurrence", "interval, by_day, by_month_day, by_set_pos go with frequency, not rule")
    text = spec.rule
    if spec.frequency is not None:
        text = rec.rule_from_parts(
            spec.frequency,
            interval=spec.interval,
            by_day=spec.by_day,
            by_month_day=spec.by_month_day,
            by_set_pos=spec.by_set_pos,
        )
    assert text is not None
    rule = rec.compile_rule(text, count=spec.count, until=spec.until)
    start_wall = None
    if tz is not None:
        rec.check_start(rule, start=due_at, tz=tz, all_day=all_day, wall=wall)
        start_wall = rec.series_start(due_at, tz, all_day, wall)
    anchor = Anchor(spec.anchor) if spec.anchor else (current.anchor if current else Anchor.SCHEDULE)
    return Recurrence(rule=rule, start=due_at, anchor=anchor, wall=start_wall)
