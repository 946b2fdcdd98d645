"""The recurrence worker's use case: the occurrence that follows a completed one of a series."""

from __future__ import annotations

from collections.abc import Sequence

from doable.domain.events import EventType
from doable.domain.occurrences import OccurrenceStatus
from doable.domain.series import plan_next, successor
from doable.domain.task import Task
from doable.platform.offload import off_loop
from doable.ports import UnitOfWork
from doable.usecases.runner import UseCaseRunner, check_user_id, profile_of
from doable.usecases.series_edits import occurrence_record
from doable.usecases.task_steps import TaskSteps


def _repeats(task: Task) -> bool:
    return task.recurrence is not None and task.series_id is not None and task.due_at is not None


class NextOccurrences:
    def __init__(self, runner: UseCaseRunner, steps: TaskSteps) -> None:
        self._run = runner
        self._steps = steps

    async def create(self, completed: Task) -> Task | None:
        """Create the occurrence that follows `completed` (the task as its `completed` event recorded it).

        Idempotent per series and completed due date: a redelivered or duplicated event, or the same
        occurrence completed again after a reopen, returns the occurrence made the first time (None
        if that was deleted since). None as well when the series has ended (COUNT/UNTIL)."""
        if not _repeats(completed):
            return None
        check_user_id(completed.user_id)
        return await self._run.atomic(lambda uow: self._next_in(uow, completed))

    async def create_many(self, completed: Sequence[Task]) -> list[Task | None]:
        """`create` for a batch of completions, in one unit of work (one transaction), in order:
        what each returns, by position. The same guarantees per item (one successor per series and
        date: a completion repeated within the batch, or redelivered later, finds the successor the
        first one made). All or nothing: when one item fails (e.g. a user's task limit), nothing is
        kept and the error is raised, so the caller can retry the items one by one and settle each
        on its own."""
        wanted = [i for i, t in enumerate(completed) if _repeats(t)]
        for i in wanted:
            check_user_id(completed[i].user_id)
        if not wanted:
            return [None] * len(completed)

        async def work(uow: UnitOfWork) -> dict[int, Task | None]:
            return {i: await self._next_in(uow, completed[i]) for i in wanted}

        made = await self._run.atomic(work)
        return [made.get(i) for i in range(len(completed))]

    async def _next_in(self, uow: UnitOfWork, completed: Task) -> Task | None:
        """The work of `create` within `uow` (which reads its own writes, so a batch's items see
        the successors made before them)."""
        user_id = completed.user_id
        series_id, after = completed.series_id, completed.series_base().due_at
        assert series_id is not None and after is not None
        existing = await uow.series.successor(user_id, series_id, after)
        if existing is not None and existing != completed.task_id:
            return await uow.tasks.get(user_id, existing)
        current = await uow.tasks.get(user_id, completed.task_id)
        if current is not None and not current.completed and current.version > completed.version:
            # Reopened (or its completion undone) after this completion, before it was handled.
            return None
        if existing is not None:
            # An undone completion claimed this occurrence (a link to itself); completed again since.
            await uow.series.unlink(user_id, series_id, after)
        tz = (await profile_of(uow, user_id)).tz
        now = self._run.now()
        plan = await off_loop(plan_next, completed, tz, now)
        if plan is None:
            return None
        if plan.due_at is None:
            # The series has ended; the dates it passed while overdue are still missed (once,
            # however often this event is delivered).
            seen = {
                r.due_at
                for r in await uow.occurrences.list(user_id, series_id, limit=200)
                if r.status is OccurrenceStatus.MISSED
            }
            missed = [
                occurrence_record(completed, OccurrenceStatus.MISSED, now, tz, due_at=d)
                for d in plan.missed
                if d not in seen
            ]
            if missed:
                await uow.occurrences.add(missed)
            return None
        await self._steps.check_quota(uow, user_id)
        task_id = await uow.tasks.next_id(user_id)
        task = successor(completed, task_id=task_id, due_at=plan.due_at, tz=tz, now=now, recurrence=plan.recurrence)
        await uow.series.link(user_id, series_id, after, task.task_id, now)
        await uow.tasks.add(task)
        await uow.events.add(self._run.event(EventType.CREATED, task))
        missed = [occurrence_record(completed, OccurrenceStatus.MISSED, now, tz, due_at=d) for d in plan.missed]
        await uow.occurrences.add(missed)
        return task
