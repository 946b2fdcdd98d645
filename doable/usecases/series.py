"""Use cases of repeating series for agents: skip an occurrence, read a series' per-occurrence
history. (Completing an occurrence and creating the next one are the task service's.)"""

from __future__ import annotations

from doable.domain.errors import InvalidArgument
from doable.domain.events import EventType
from doable.domain.occurrences import OccurrenceRecord, OccurrenceStatus
from doable.domain.series import moved, plan_skip
from doable.domain.task import Task
from doable.platform.offload import off_loop
from doable.ports import UnitOfWork
from doable.usecases.runner import TASK_CODEC, Outcome, UseCaseRunner, profile_of, task_of
from doable.usecases.series_edits import occurrence_record
from doable.usecases.undo_log import UndoLog


class SeriesActions:
    """Runs on the runner every use case runs on (unit of work, idempotency, undo records, events)."""

    def __init__(self, runner: UseCaseRunner) -> None:
        self._run = runner

    async def skip(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Outcome[Task]:
        """Skip this occurrence of a repeating task: it moves to the series' next date that is not
        yet past (recorded as skipped; dates passed on the way as missed)."""

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            task = await task_of(uow, user_id, task_id)
            if task.recurrence is None or task.series_id is None or task.due_at is None:
                raise InvalidArgument("skip", f"task {task_id} does not repeat; complete or delete it instead")
            if task.completed:
                raise InvalidArgument("skip", f"task {task_id} is completed; only a pending occurrence can be skipped")
            tz = (await profile_of(uow, user_id)).tz
            now = self._run.now()
            plan = await off_loop(plan_skip, task, tz, now)  # expands the rule: off the event loop
            if plan is None:
                raise InvalidArgument("skip", "this is the series' last occurrence; complete or delete it instead")
            assert plan.due_at is not None  # plan_skip returns only a plan with a date
            # The next occurrence takes the series' values, not this one's one-off changes.
            moved_task = task.series_base().evolve(**moved(task, plan.due_at, tz), updated_at=now)
            await uow.tasks.update(moved_task)
            await uow.events.add(self._run.event(EventType.UPDATED, moved_task, "skip"))
            undo.task(task, moved_task)
            records = [occurrence_record(task, OccurrenceStatus.SKIPPED, now, tz)]
            records += [occurrence_record(task, OccurrenceStatus.MISSED, now, tz, due_at=d) for d in plan.missed]
            await uow.occurrences.add(records)
            undo.records_added(records)
            return moved_task

        request = {"op": "skip", "task_id": task_id}
        return await self._run.change(user_id, idempotency_key, request, work, TASK_CODEC)

    async def occurrences(self, user_id: str, task_id: int, limit: int = 50) -> list[OccurrenceRecord] | None:
        """The per-occurrence history of the series `task_id` belongs to (None: it is in none, or is gone)."""

        async def work(uow: UnitOfWork) -> list[OccurrenceRecord] | None:
            task = await uow.tasks.get(user_id, task_id)
            if task is None or task.series_id is None:
                return None
            return await uow.occurrences.list(user_id, task.series_id, limit)

        return await self._run.read(work)
