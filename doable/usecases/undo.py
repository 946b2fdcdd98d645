"""Undo: every mutating call leaves a token that reverses it, for a bounded time.

The undo record is written in the same unit of work as the change, and holds what is needed to
reverse it: each task as it was before (or None when the change created it) with the version the
change left, the occurrence records the change added or removed, the profile as it was. `undo`
applies the inverse only when nothing changed since (the versions still match), in one unit of
work, records the events as caused by "undo" (by the agent when through MCP), and answers with
a token of its own (so an undo can be undone: a redo).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from doable.domain.errors import InvalidArgument, LimitExceeded, Stale
from doable.domain.events import EventType
from doable.domain.occurrences import OccurrenceRecord, OccurrenceStatus
from doable.domain.profile import Profile
from doable.domain.task import Task
from doable.ports import UnitOfWork
from doable.usecases.runner import Outcome, UseCaseRunner, model_codec
from doable.usecases.task_steps import TaskSteps
from doable.usecases.undo_log import KIND, UNDO_WINDOW, UndoLog


class Reverted(BaseModel):
    """One task an undo touched: restored to how it was, re-created, or deleted again."""

    status: Literal["restored", "recreated", "deleted"]
    task: Task


class UndoResult(BaseModel):
    label: str
    tasks: list[Reverted] = []
    profile: Profile | None = None


class Undo:
    """The undo use case: on the runner every use case runs on (unit of work with retries,
    idempotency, events); the task quota from the task steps."""

    def __init__(self, runner: UseCaseRunner, steps: TaskSteps) -> None:
        self._run = runner
        self._steps = steps

    async def undo(self, user_id: str, token: str, *, idempotency_key: str | None = None) -> Outcome[UndoResult]:
        """Reverse the change `token` was issued for, if nothing it touched changed since; the
        outcome's undo token undoes the undo (a redo)."""
        if not isinstance(token, str) or not token.startswith("u-") or len(token) > 64:
            raise InvalidArgument("token", "must be an undo token from a change's result (starts with 'u-')")

        async def work(uow: UnitOfWork, redo: UndoLog) -> UndoResult:
            now = self._run.now()
            record = await uow.tokens.get(user_id, token)
            if record is None or record.kind != KIND:
                raise InvalidArgument("token", "is not a current undo token of yours: used already, or never issued")
            if record.expires_at < now:
                raise InvalidArgument(
                    "token", f"expired; a change can be undone for {int(UNDO_WINDOW.total_seconds()) // 3600} hours"
                )
            steps: list[dict[str, Any]] = record.data["steps"]
            result = UndoResult(label=record.data.get("label", "change"))
            current = await self._check(uow, user_id, steps)
            await self._check_quota(uow, user_id, steps, current)
            for step in reversed(steps):
                if step["kind"] == "task":
                    await self._task(uow, step, current[step["task_id"]], result, redo, now)
                elif step["kind"] in ("records_added", "records_removed"):
                    records = [OccurrenceRecord.model_validate(r) for r in step["records"]]
                    if step["kind"] == "records_added":
                        for series_id in {r.series_id for r in records}:
                            ids = [r.id for r in records if r.series_id == series_id]
                            await uow.occurrences.remove(user_id, series_id, ids)
                        redo.records_removed(records)
                    else:
                        await uow.occurrences.add(records)
                        redo.records_added(records)
                elif step["kind"] == "profile":
                    before = Profile.model_validate(step["before"]) if step["before"] else Profile(user_id=user_id)
                    restored = before.model_copy(update={"updated_at": now})
                    redo.profile(await uow.profiles.get(user_id), restored)
                    await uow.profiles.save(restored)
                    result.profile = restored
            await uow.tokens.remove(user_id, token)
            return result

        request = {"op": "undo", "token": token}
        return await self._run.change(user_id, idempotency_key, request, work, model_codec(UndoResult))

    @staticmethod
    async def _check(uow: UnitOfWork, user_id: str, steps: list[dict[str, Any]]) -> dict[int, Task | None]:
        """The tasks as they are now; Stale unless each is as the change left it."""
        current: dict[int, Task | None] = {}
        stale: list[str] = []
        for step in steps:
            if step["kind"] == "task":
                task = await uow.tasks.get(user_id, step["task_id"])
                current[step["task_id"]] = task
                if (task is None) != (step["after"] is None) or (task is not None and task.version != step["after"]):
                    stale.append(f"task {step['task_id']}")
            elif step["kind"] == "profile":
                profile = await uow.profiles.get(user_id)
                if profile is None or profile.model_dump(mode="json") != step["after"]:
                    stale.append("the timezone")
        if stale:
            raise Stale(f"{', '.join(stale)} changed since; nothing was undone (read the current state first)")
        return current

    async def _check_quota(
        self, uow: UnitOfWork, user_id: str, steps: list[dict[str, Any]], current: dict[int, Task | None]
    ) -> None:
        """An undo that would re-create tasks (undoing a delete) obeys the per-user task quota like
        any other way of creating one: delete, create another, undo the delete must not go past it."""
        recreated = sum(1 for s in steps if s["kind"] == "task" and s["before"] and current[s["task_id"]] is None)
        removed = sum(1 for s in steps if s["kind"] == "task" and not s["before"] and current[s["task_id"]] is not None)
        if recreated <= removed:
            return
        quota = self._steps.limits.tasks_per_user
        if await uow.tasks.count(user_id) + recreated - removed > quota:
            raise LimitExceeded(
                "tasks", f"limit of {quota} tasks per user reached; undoing this would re-create {recreated}"
            )

    async def _task(
        self, uow: UnitOfWork, step: dict[str, Any], task: Task | None, result: UndoResult, redo: UndoLog, now: datetime
    ) -> None:
        before = Task.model_validate(step["before"]) if step["before"] else None
        if before is None:
            assert task is not None
            await uow.tasks.remove(task)
            await uow.events.add(self._run.event(EventType.DELETED, task, "undo"))
            redo.task(task, None)
            result.tasks.append(Reverted(status="deleted", task=task))
            return
        if task is None:
            restored = before.model_copy(update={"version": before.version + 1, "updated_at": now})
            await uow.tasks.add(restored)
            await uow.events.add(self._run.event(EventType.CREATED, restored, "undo"))
            redo.task(None, restored)
            result.tasks.append(Reverted(status="recreated", task=restored))
            return
        restored = before.model_copy(update={"version": task.version + 1, "updated_at": now})
        await uow.tasks.update(restored)
        kind = EventType.UPDATED
        if restored.completed != task.completed:
            kind = EventType.COMPLETED if restored.completed else EventType.REOPENED
        await uow.events.add(self._run.event(kind, restored, "undo"))
        redo.task(task, restored)
        result.tasks.append(Reverted(status="restored", task=restored))
        if task.completed and not restored.completed and task.series_id and task.recurrence and task.due_at:
            await self._unspawn(uow, task, result, now)

    async def _unspawn(self, uow: UnitOfWork, task: Task, result: UndoResult, now: datetime) -> None:
        """An undone completion: the occurrence it spawned goes (if untouched), and so do the
        missed dates that spawning recorded. The occurrence is then claimed (linked to itself),
        so the completion's event, if the recurrence worker has not handled it yet, spawns nothing;
        completing the task again spawns the next occurrence as usual."""
        user_id, series_id = task.user_id, task.series_id
        assert series_id is not None
        slot = task.series_base().due_at
        assert slot is not None
        spawned_id = await uow.series.successor(user_id, series_id, slot)
        if spawned_id == task.task_id:
            return
        spawned = await uow.tasks.get(user_id, spawned_id) if spawned_id is not None else None
        if spawned is not None:
            if spawned.version != 1 or spawned.completed:
                raise Stale(
                    f"task {spawned.task_id}, the occurrence its completion created, changed since; nothing was undone"
                )
            await uow.tasks.remove(spawned)
            await uow.events.add(self._run.event(EventType.DELETED, spawned, "undo"))
            result.tasks.append(Reverted(status="deleted", task=spawned))
        if spawned_id is not None:
            await uow.series.unlink(user_id, series_id, slot)
            missed = [
                r.id
                for r in await uow.occurrences.list(user_id, series_id, limit=500)
                if r.status is OccurrenceStatus.MISSED
                and r.task_id == task.task_id
                and r.due_at > slot
                and (spawned is None or spawned.due_at is None or r.due_at < spawned.due_at)
            ]
            await uow.occurrences.remove(user_id, series_id, missed)
        await uow.series.link(user_id, series_id, slot, task.task_id, now)


class RevertedView(BaseModel):
    task_id: int
    status: str
    title: str


class UndoView(BaseModel):
    undone: str
    tasks: list[RevertedView]
    timezone: str | None = None
    # Undoes this undo (a redo).
    undo: str | None = None


def undo_view(result: UndoResult, redo: str | None) -> UndoView:
    return UndoView(
        undone=result.label,
        tasks=[RevertedView(task_id=r.task.task_id, status=r.status, title=r.task.title) for r in result.tasks],
        timezone=result.profile.timezone if result.profile else None,
        undo=redo,
    )
