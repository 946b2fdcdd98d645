"""The steps that change one task within a unit of work, shared by the use cases that make them
(one task at a time, or many in one bulk change), and the rules that need the user's timezone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from doable.domain import recurrence as rec
from doable.domain.due import parse_due, parse_instant, requested_wall
from doable.domain.errors import InvalidArgument, LimitExceeded
from doable.domain.events import EventType
from doable.domain.occurrences import OccurrenceStatus
from doable.domain.series import occurrence_wall
from doable.domain.task import (
    REMINDERS_MAX,
    Recurrence,
    Reminder,
    Task,
    normalize_description,
    normalize_tags,
    normalize_title,
    parse_priority,
    validate_reminders,
)
from doable.platform.offload import off_loop
from doable.ports import UnitOfWork
from doable.usecases.inputs import RecurrenceArg, ReminderIn, TaskChanges
from doable.usecases.runner import UseCaseRunner, profile_of
from doable.usecases.series_edits import (
    Scope,
    apply_scope,
    build_recurrence,
    occurrence_record,
    record_completion,
    spread_all,
)
from doable.usecases.undo_log import UndoLog


@dataclass(frozen=True)
class Limits:
    tasks_per_user: int = 100_000
    reminders_per_task: int = REMINDERS_MAX


class TaskSteps:
    """Complete, reopen, delete or update one task within a unit of work (with its events, undo
    steps and occurrence records), and the checks every path that creates a task makes."""

    def __init__(self, runner: UseCaseRunner, limits: Limits) -> None:
        self._run = runner
        self.limits = limits

    async def check_quota(self, uow: UnitOfWork, user_id: str, adding: int = 1, *, removing: int = 0) -> None:
        """LimitExceeded when the user would go past the task quota."""
        quota = self.limits.tasks_per_user
        if adding > removing and await uow.tasks.count(user_id) + adding - removing > quota:
            raise LimitExceeded("tasks", f"limit of {quota} tasks per user reached")

    def reminders(self, given: list[ReminderIn] | None, tz: ZoneInfo, due_at: datetime | None) -> tuple[Reminder, ...]:
        if not given:
            return ()
        most = self.limits.reminders_per_task
        if len(given) > most:
            raise InvalidArgument("reminders", f"at most {most} reminders per task")
        parsed: list[Reminder] = []
        for i, r in enumerate(given):
            field = f"reminders[{i}]"
            if (r.at is None) == (r.minutes_before is None):
                raise InvalidArgument(field, "needs exactly one of 'at' (ISO datetime) or 'minutes_before'")
            if r.at is not None:
                parsed.append(Reminder(at=parse_instant(r.at, tz, f"{field}.at")))
            else:
                parsed.append(Reminder(minutes_before=r.minutes_before))
        return validate_reminders(tuple(parsed), due_at, most)

    @staticmethod
    async def recurrence(
        given: RecurrenceArg | None,
        due_at: datetime | None,
        tz: ZoneInfo | None = None,
        *,
        all_day: bool = False,
        current: Recurrence | None = None,
        wall: datetime | None = None,
    ) -> Recurrence | None:
        """The recurrence `given` (a string, or the typed object) starting at `due_at`; without an
        anchor of its own it keeps `current`'s (the task's recurrence before an update)."""
        if given is None:
            return None
        if due_at is None:
            raise InvalidArgument("recurrence", "needs a due date (the first occurrence)")
        # Validating a rule can be slow (the search for its occurrences): off the event loop.
        return await off_loop(build_recurrence, given, due_at, tz, all_day=all_day, current=current, wall=wall)

    async def set_completed_in(
        self, uow: UnitOfWork, task: Task, done: bool, undo: UndoLog, cause: str | None = None
    ) -> Task:
        """Complete or reopen `task` (a no-op when it already is), with its occurrence record when it repeats."""
        if task.completed == done:
            # Idempotent: completing a completed task records nothing new.
            return task
        now = self._run.now()
        changed = task.evolve(completed=done, completed_at=now if done else None, updated_at=now)
        await uow.tasks.update(changed)
        await uow.events.add(self._run.event(EventType.COMPLETED if done else EventType.REOPENED, changed, cause))
        undo.task(task, changed)
        if task.series_id and task.recurrence and task.due_at:
            tz = (await profile_of(uow, task.user_id)).tz
            await record_completion(uow, task, done, now, tz, undo)
        return changed

    async def delete_in(self, uow: UnitOfWork, task: Task, undo: UndoLog, cause: str | None = None) -> Task:
        await uow.tasks.remove(task)
        await uow.events.add(self._run.event(EventType.DELETED, task, cause))
        undo.task(task, None)
        return task

    async def update_in(
        self,
        uow: UnitOfWork,
        task: Task,
        changes: TaskChanges,
        undo: UndoLog,
        *,
        scope: Scope = "future",
        cause: str | None = None,
    ) -> Task:
        """Apply `changes` to `task` (null clears); for a repeating task `scope` says which
        occurrences the change is for (see doable.usecases.series_edits)."""
        given = changes.model_fields_set
        update = _plain_fields(changes)
        tz = (await profile_of(uow, task.user_id)).tz
        if scope == "this" and task.recurrence is not None and "recurrence" in given:
            raise InvalidArgument("scope", "'this' changes one occurrence; change the rule with scope future or all")
        due_at, due_date = task.due_at, task.due_date
        if "due" in given:
            due_at, due_date = parse_due(changes.due, tz) if changes.due is not None else (None, None)
            update["due_at"], update["due_date"] = due_at, due_date
        if "reminders" in given:
            update["reminders"] = self.reminders(changes.reminders, tz, due_at)
        else:
            # Keep existing reminders; an offset reminder needs the due date to stay.
            update["reminders"] = validate_reminders(task.reminders, due_at, self.limits.reminders_per_task)
        update["recurrence"] = recurrence = await self._recurrence_after(task, changes, scope, due_at, due_date, tz)
        if recurrence is not None and task.series_id is None:
            update["series_id"] = f"{task.user_id}:{task.task_id}"
        now = self._run.now()
        updated = apply_scope(task, task.evolve(**update, updated_at=now), scope, set(given), tz)
        await uow.tasks.update(updated)
        await uow.events.add(self._run.event(EventType.UPDATED, updated, cause))
        undo.task(task, updated)
        if task.series_id and task.recurrence and not task.completed and task.due_at != updated.due_at:
            record = occurrence_record(task, OccurrenceStatus.RESCHEDULED, now, tz, moved_to=updated)
            await uow.occurrences.add([record])
            undo.records_added([record])
        if scope == "all" and task.series_id and task.recurrence:
            for other in await spread_all(uow, task.series_id, updated, set(given), now, undo):
                await uow.events.add(self._run.event(EventType.UPDATED, other, cause))
        return updated

    async def _recurrence_after(
        self,
        task: Task,
        changes: TaskChanges,
        scope: Scope,
        due_at: datetime | None,
        due_date: date | None,
        tz: ZoneInfo,
    ) -> Recurrence | None:
        """The task's recurrence after `changes`: a new rule, or the current one re-anchored at a new due date."""
        given = changes.model_fields_set
        recurrence = task.recurrence
        all_day = due_date is not None
        # The requested wall-clock time of the (new) due date: where a series starting here starts.
        wall = requested_wall(changes.due) if "due" in given else occurrence_wall(task, tz)
        if "recurrence" in given:
            return await self.recurrence(
                changes.recurrence, due_at, tz, all_day=all_day, current=task.recurrence, wall=wall
            )
        if recurrence is None:
            return None
        if due_at is None:
            raise InvalidArgument("due", "cannot be cleared while the task repeats; clear recurrence too")
        if "due" in given and scope == "future":
            # The series re-anchors here: the rule restarts (and COUNT counts) from the new date.
            await off_loop(rec.check_start, recurrence.rule, start=due_at, tz=tz, all_day=all_day, wall=wall)
            start_wall = rec.series_start(due_at, tz, all_day, wall)
            recurrence = recurrence.model_copy(update={"start": due_at, "prior": 0, "wall": start_wall})
        return recurrence


def _plain_fields(changes: TaskChanges) -> dict[str, Any]:
    """The title, description, tags and priority `changes` set, normalized (a null priority is none)."""
    given = changes.model_fields_set
    if "title" in given and changes.title is None:
        raise InvalidArgument("title", "cannot be cleared")
    update: dict[str, Any] = {}
    if changes.title is not None:
        update["title"] = normalize_title(changes.title)
    if "description" in given:
        update["description"] = normalize_description(changes.description)
    if "tags" in given:
        update["tags"] = normalize_tags(changes.tags)
    if "priority" in given:
        update["priority"] = parse_priority(changes.priority if changes.priority is not None else "none")
    return update
