"""Bulk changes (complete, reopen, delete or reschedule several tasks, by ids or by filter), in two
steps: a preview that changes nothing and answers with a confirmation token, and the confirmed
call, which applies the change to exactly the tasks the preview showed, in one unit of work.

The token binds the user, the action, each task's id and version, and the new due date, for ten
minutes. The confirmed call checks every version again: if any of the tasks changed since the
preview, nothing is changed and the error names them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from doable.domain.clock import localize
from doable.domain.due import parse_due
from doable.domain.errors import InvalidArgument, Stale
from doable.domain.query import LIMIT_MAX, SortField
from doable.domain.task import Task
from doable.ports import ActionToken, UnitOfWork
from doable.usecases.inputs import ListRequest, TaskChanges
from doable.usecases.list_query import build_query
from doable.usecases.runner import Outcome, UseCaseRunner, model_codec, profile_of
from doable.usecases.task_steps import TaskSteps
from doable.usecases.undo_log import UndoLog, new_token
from doable.usecases.views import local

Action = Literal["complete", "reopen", "delete", "reschedule"]
ACTIONS = ("complete", "reopen", "delete", "reschedule")
BULK_MAX = LIMIT_MAX
CONFIRM_WINDOW = timedelta(minutes=10)
KIND = "bulk"


class BulkOutcome(BaseModel):
    action: str
    confirmed: bool
    # The tasks the change is for (preview) or was applied to (confirmed), as they are now.
    tasks: list[Task]
    # Ids asked for that do not exist (or are not yours).
    missing: list[int] = []
    # The filter matched more than BULK_MAX tasks: only the first BULK_MAX (by due date) are included.
    truncated: bool = False
    confirm_token: str | None = None
    expires_at: datetime | None = None


def _applies(action: str, task: Task) -> bool:
    if action == "complete":
        return not task.completed
    if action == "reopen":
        return task.completed
    return True


class Bulk:
    """The bulk use case, on the runner every use case runs on and the per-task steps."""

    def __init__(self, runner: UseCaseRunner, steps: TaskSteps) -> None:
        self._run = runner
        self._steps = steps

    async def run(
        self,
        user_id: str,
        action: str | None = None,
        *,
        task_ids: list[int] | None = None,
        filter: str | None = None,
        due: str | None = None,
        confirm_token: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome[BulkOutcome]:
        """Without `confirm_token`: a preview and a token. With it: the change, as previewed (and
        the token that undoes it)."""
        if confirm_token is not None:
            return await self._confirm(user_id, confirm_token, action, idempotency_key)
        if action not in ACTIONS:
            raise InvalidArgument("action", f"must be one of {', '.join(ACTIONS)}")
        if (task_ids is None) == (filter is None):
            raise InvalidArgument("task_ids", "give task_ids or filter (not both) to say which tasks")
        if task_ids is not None and not 1 <= len(task_ids) <= BULK_MAX:
            raise InvalidArgument("task_ids", f"must list 1 to {BULK_MAX} task ids")
        if (action == "reschedule") != (due is not None):
            raise InvalidArgument("due", "is required for reschedule, and only for it")
        return await self._preview(user_id, action, task_ids, filter, due)

    async def _preview(
        self, user_id: str, action: str, task_ids: list[int] | None, text: str | None, due: str | None
    ) -> Outcome[BulkOutcome]:
        async def work(uow: UnitOfWork) -> Outcome[BulkOutcome]:
            profile = await profile_of(uow, user_id)
            cal = self._run.calendar(profile)
            if due is not None:
                parse_due(due, profile.tz)  # refuse a bad date now, not at confirmation
            missing: list[int] = []
            truncated = False
            if task_ids is not None:
                found: list[Task] = []
                for task_id in dict.fromkeys(task_ids):
                    valid = isinstance(task_id, int) and not isinstance(task_id, bool) and 1 <= task_id <= 2**53
                    task = await uow.tasks.get(user_id, task_id) if valid else None
                    if task is None:
                        missing.append(task_id)
                    else:
                        found.append(task)
            else:
                query = build_query(ListRequest(filter=text, sort=SortField.DUE, limit=BULK_MAX), cal)
                page = await uow.tasks.list(user_id, replace(query, limit=BULK_MAX + 1))
                found, truncated = page.tasks[:BULK_MAX], len(page.tasks) > BULK_MAX
            tasks = [t for t in found if _applies(action, t)]
            outcome = BulkOutcome(action=action, confirmed=False, tasks=tasks, missing=missing, truncated=truncated)
            if not tasks:
                return Outcome(outcome, cal)
            now = self._run.now()
            token = new_token("b-")
            data = {"action": action, "tasks": {str(t.task_id): t.version for t in tasks}, "due": due}
            await uow.tokens.put(ActionToken(user_id, token, KIND, now, now + CONFIRM_WINDOW, data))
            return Outcome(outcome.model_copy(update={"confirm_token": token, "expires_at": now + CONFIRM_WINDOW}), cal)

        return await self._run.atomic(work)

    async def _confirm(
        self, user_id: str, token: str, action: str | None, idempotency_key: str | None
    ) -> Outcome[BulkOutcome]:
        async def work(uow: UnitOfWork, undo: UndoLog) -> BulkOutcome:
            record = await uow.tokens.get(user_id, token)
            now = self._run.now()
            if record is None or record.kind != KIND:
                raise InvalidArgument(
                    "confirm_token", "is not a current confirmation token: used already, or never issued"
                )
            if record.expires_at < now:
                raise InvalidArgument("confirm_token", "expired (tokens last 10 minutes); preview again")
            bound: str = record.data["action"]
            if action is not None and action != bound:
                raise InvalidArgument("action", f"this confirm_token was issued for {bound}")
            tasks: list[Task] = []
            changed: list[str] = []
            for key, version in record.data["tasks"].items():
                task = await uow.tasks.get(user_id, int(key))
                if task is None or task.version != version:
                    changed.append(key)
                elif task is not None:
                    tasks.append(task)
            if changed:
                raise Stale(
                    f"task(s) {', '.join(changed)} changed since the preview; nothing was changed: preview again"
                )
            tz = (await profile_of(uow, user_id)).tz
            done: list[Task] = []
            for task in tasks:
                if bound == "delete":
                    done.append(await self._steps.delete_in(uow, task, undo, cause="bulk"))
                elif bound == "reschedule":
                    changes = TaskChanges(due=_due_for(task, record.data["due"], tz))
                    done.append(await self._steps.update_in(uow, task, changes, undo, cause="bulk"))
                else:
                    done.append(await self._steps.set_completed_in(uow, task, bound == "complete", undo, cause="bulk"))
            await uow.tokens.remove(user_id, token)
            return BulkOutcome(action=bound, confirmed=True, tasks=done)

        request: dict[str, object] = {"op": "bulk", "confirm_token": token}
        return await self._run.change(user_id, idempotency_key, request, work, model_codec(BulkOutcome))


def _due_for(task: Task, due: str, tz: ZoneInfo) -> str:
    """The new due as update text: a plain date keeps a timed task's local time of day."""
    _, day = parse_due(due, tz)
    if day is None or task.due_at is None or task.due_date is not None:
        return due
    return localize(datetime.combine(day, task.due_at.astimezone(tz).time()), tz).isoformat()


class BulkTaskView(BaseModel):
    id: int
    title: str
    due: str | None = None
    completed: bool


class BulkView(BaseModel):
    action: str
    confirmed: bool
    count: int
    tasks: list[BulkTaskView]
    missing: list[int] = []
    truncated: bool = False
    confirm_token: str | None = None
    expires: str | None = None
    undo: str | None = None
    note: str


def bulk_view(outcome: BulkOutcome, tz: ZoneInfo, undo: str | None = None) -> BulkView:
    if outcome.confirmed:
        note = f"done: {outcome.action} applied to {len(outcome.tasks)} task(s); `undo` reverses it"
    elif outcome.confirm_token:
        note = "nothing changed yet: call again with confirm_token (within 10 minutes) to apply to exactly these tasks"
    else:
        note = f"no task to {outcome.action}: nothing to confirm"
    return BulkView(
        action=outcome.action,
        confirmed=outcome.confirmed,
        count=len(outcome.tasks),
        tasks=[
            BulkTaskView(
                id=t.task_id,
                title=t.title,
                due=t.due_date.isoformat() if t.due_date else local(t.due_at, tz),
                completed=t.completed,
            )
            for t in outcome.tasks
        ],
        missing=outcome.missing,
        truncated=outcome.truncated,
        confirm_token=outcome.confirm_token,
        expires=local(outcome.expires_at, tz),
        undo=undo,
        note=note,
    )
