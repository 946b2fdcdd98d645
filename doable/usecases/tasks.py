"""The task and profile use cases, as transports call them: each answers with an `Outcome` (the
value, the token that undoes it, and the user's calendar from the same unit of work)."""

from __future__ import annotations

from dataclasses import replace

from doable.domain import filter_text
from doable.domain.clock import zone
from doable.domain.due import parse_due, requested_wall
from doable.domain.errors import InvalidArgument
from doable.domain.events import EventType
from doable.domain.profile import Profile
from doable.domain.query import TaskPage, encode_cursor
from doable.domain.task import Task, normalize_description, normalize_tags, normalize_title, parse_priority
from doable.ports import UnitOfWork
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from doable.usecases.list_query import build_query
from doable.usecases.runner import TASK_CODEC, Outcome, UseCaseRunner, check_user_id, model_codec, profile_of, task_of
from doable.usecases.series_edits import Scope
from doable.usecases.task_steps import TaskSteps
from doable.usecases.undo_log import UndoLog


class TaskUseCases:
    def __init__(self, runner: UseCaseRunner, steps: TaskSteps) -> None:
        self._run = runner
        self._steps = steps

    # ---- profile ------------------------------------------------------------------------

    async def get_profile(self, user_id: str) -> Outcome[Profile]:
        check_user_id(user_id)
        return await self._run.read_for(user_id, lambda uow: profile_of(uow, user_id), lookup=True)

    async def set_timezone(self, user_id: str, timezone: str) -> Outcome[Profile]:
        check_user_id(user_id)
        zone(timezone)
        profile = Profile(user_id=user_id, timezone=timezone, updated_at=self._run.now())

        async def work(uow: UnitOfWork, undo: UndoLog) -> Profile:
            undo.profile(await uow.profiles.get(user_id), profile)
            await uow.profiles.save(profile)
            return profile

        request = {"op": "set_timezone", "timezone": timezone}
        done = await self._run.change(user_id, None, request, work, model_codec(Profile))
        # The calendar of the profile just set (a store need not read back a write of the same
        # unit of work: Dapr state answers with the stored document).
        return replace(done, calendar=self._run.calendar(done.value))

    # ---- tasks --------------------------------------------------------------------------

    async def add(
        self, user_id: str, new: NewTask, *, idempotency_key: str | None = None, preview: bool = False
    ) -> Outcome[Task]:
        """Create a task. With `preview`, validate and return it as it would be, saving nothing."""
        check_user_id(user_id)
        title = normalize_title(new.title)
        description = normalize_description(new.description)
        priority = parse_priority(new.priority)
        tags = normalize_tags(new.tags)

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            tz = (await profile_of(uow, user_id)).tz
            due_at, due_date = parse_due(new.due, tz) if new.due is not None else (None, None)
            reminders = self._steps.reminders(new.reminders, tz, due_at)
            recurrence = await self._steps.recurrence(
                new.recurrence, due_at, tz, all_day=due_date is not None, wall=requested_wall(new.due)
            )
            await self._steps.check_quota(uow, user_id)
            now = self._run.now()
            task_id = await uow.tasks.next_id(user_id)
            task = Task(
                user_id=user_id,
                task_id=task_id,
                title=title,
                description=description,
                priority=priority,
                tags=tags,
                due_at=due_at,
                due_date=due_date,
                reminders=reminders,
                recurrence=recurrence,
                series_id=f"{user_id}:{task_id}" if recurrence else None,
                created_at=now,
                updated_at=now,
            )
            await uow.tasks.add(task)
            await uow.events.add(self._run.event(EventType.CREATED, task))
            undo.task(None, task)
            return task

        if preview:
            return await self._run.dry_run(user_id, work)
        request = {"op": "add", **new.model_dump(mode="json")}
        return await self._run.change(user_id, idempotency_key, request, work, TASK_CODEC)

    async def get(self, user_id: str, task_id: int) -> Outcome[Task]:
        check_user_id(user_id)
        return await self._run.read_for(user_id, lambda uow: task_of(uow, user_id, task_id), lookup=True)

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        """The tasks of several (user, task id) pairs as they are now, read in one unit of work
        (the workers' batches); pairs that do not exist are left out."""
        for user_id, _ in keys:
            check_user_id(user_id)

        async def work(uow: UnitOfWork) -> dict[tuple[str, int], Task]:
            return await uow.tasks.get_many(list(dict.fromkeys(keys)))

        return await self._run.read(work, lookup=True)

    async def update(
        self,
        user_id: str,
        task_id: int,
        changes: TaskChanges,
        *,
        idempotency_key: str | None = None,
        scope: Scope = "future",
        preview: bool = False,
    ) -> Outcome[Task]:
        """Change the fields named in `changes` (null clears). For a repeating task `scope` says
        which occurrences the change is for (see doable.usecases.series_edits). With `preview`, nothing is saved."""
        check_user_id(user_id)
        if not changes.model_fields_set:
            raise InvalidArgument("changes", "must name at least one field to update")
        if scope not in ("this", "future", "all"):
            raise InvalidArgument("scope", "must be one of this, future, all")

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            return await self._steps.update_in(uow, await task_of(uow, user_id, task_id), changes, undo, scope=scope)

        if preview:
            return await self._run.dry_run(user_id, work)
        request = {
            "op": "update",
            "task_id": task_id,
            "scope": scope,
            **changes.model_dump(mode="json", exclude_unset=True),
        }
        return await self._run.change(user_id, idempotency_key, request, work, TASK_CODEC)

    async def complete(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Outcome[Task]:
        return await self._set_completed(user_id, task_id, True, idempotency_key)

    async def reopen(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Outcome[Task]:
        return await self._set_completed(user_id, task_id, False, idempotency_key)

    async def _set_completed(
        self, user_id: str, task_id: int, done: bool, idempotency_key: str | None
    ) -> Outcome[Task]:
        check_user_id(user_id)

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            return await self._steps.set_completed_in(uow, await task_of(uow, user_id, task_id), done, undo)

        request = {"op": "complete" if done else "reopen", "task_id": task_id}
        return await self._run.change(user_id, idempotency_key, request, work, TASK_CODEC)

    async def delete(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Outcome[Task]:
        check_user_id(user_id)

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            return await self._steps.delete_in(uow, await task_of(uow, user_id, task_id), undo)

        request = {"op": "delete", "task_id": task_id}
        return await self._run.change(user_id, idempotency_key, request, work, TASK_CODEC)

    async def list(self, user_id: str, request: ListRequest) -> Outcome[TaskPage]:
        """A page of tasks, and the user's calendar the relative filters were resolved in."""
        check_user_id(user_id)

        async def work(uow: UnitOfWork) -> Outcome[TaskPage]:
            cal = self._run.calendar(await profile_of(uow, user_id))
            query = build_query(request, cal)
            # One extra row tells whether another page exists without a second query.
            page = await uow.tasks.list(user_id, replace(query, limit=query.limit + 1))
            tasks = page.tasks[: query.limit]
            next_cursor = encode_cursor(query, tasks[-1]) if len(page.tasks) > query.limit else None
            echo = filter_text.describe(query.filter, query.sort.value, query.descending)
            return Outcome(TaskPage(tasks=tasks, total=page.total, next_cursor=next_cursor, query=echo), cal)

        return await self._run.read(work)
