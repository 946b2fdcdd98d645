"""The task use cases, assembled. Every transport (MCP, REST, chat, workers) calls these.

`TaskService` builds the use cases over one runner (doable.usecases.runner: the unit of work,
idempotency, undo records, events) and exposes them two ways:

- as the use cases themselves (`tasks`, `series`, `bulk`, `undoer`, `next_occurrences`), whose
  changes answer with an `Outcome` (value, undo token, the user's calendar): what transports
  present to people and models;
- as plain methods returning just the value, for callers that show neither an undo token nor a
  time (the workers, the agent's own reads, scripts and tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from doable.domain.clock import Clock, LocalCalendar
from doable.domain.profile import Profile
from doable.domain.query import TaskPage, TaskQuery
from doable.domain.task import Task
from doable.ports import UnitOfWorkFactory
from doable.usecases.bulk import Bulk
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from doable.usecases.list_query import build_query
from doable.usecases.next_occurrence import NextOccurrences
from doable.usecases.runner import UseCaseRunner, check_user_id
from doable.usecases.series import SeriesActions
from doable.usecases.series_edits import Scope
from doable.usecases.task_steps import Limits, TaskSteps
from doable.usecases.tasks import TaskUseCases
from doable.usecases.undo import Undo

__all__ = ["Limits", "TaskService", "check_user_id"]


class TaskService:
    """Use cases over a unit of work. Knows nothing of HTTP, MCP, SQL or Dapr."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        limits: Limits | None = None,
        trace_id: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.runner = UseCaseRunner(uow, clock, trace_id=trace_id)
        steps = TaskSteps(self.runner, limits or Limits())
        self.tasks = TaskUseCases(self.runner, steps)
        self.series = SeriesActions(self.runner)
        self.bulk = Bulk(self.runner, steps)
        self.undoer = Undo(self.runner, steps)
        self.next_occurrences = NextOccurrences(self.runner, steps)
        self._limits = steps.limits

    @property
    def task_quota(self) -> int:
        """Most tasks one user may have; every path that creates tasks checks it."""
        return self._limits.tasks_per_user

    def calendar(self, profile: Profile) -> LocalCalendar:
        return self.runner.calendar(profile)

    @staticmethod
    def build_query(request: ListRequest, cal: LocalCalendar) -> TaskQuery:
        return build_query(request, cal)

    async def get_profile(self, user_id: str) -> Profile:
        return (await self.tasks.get_profile(user_id)).value

    async def set_timezone(self, user_id: str, timezone: str) -> Profile:
        return (await self.tasks.set_timezone(user_id, timezone)).value

    async def add(
        self, user_id: str, new: NewTask, *, idempotency_key: str | None = None, preview: bool = False
    ) -> Task:
        return (await self.tasks.add(user_id, new, idempotency_key=idempotency_key, preview=preview)).value

    async def get(self, user_id: str, task_id: int) -> Task:
        return (await self.tasks.get(user_id, task_id)).value

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        return await self.tasks.get_many(keys)

    async def update(
        self,
        user_id: str,
        task_id: int,
        changes: TaskChanges,
        *,
        idempotency_key: str | None = None,
        scope: Scope = "future",
        preview: bool = False,
    ) -> Task:
        done = await self.tasks.update(
            user_id, task_id, changes, idempotency_key=idempotency_key, scope=scope, preview=preview
        )
        return done.value

    async def complete(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Task:
        return (await self.tasks.complete(user_id, task_id, idempotency_key=idempotency_key)).value

    async def reopen(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Task:
        return (await self.tasks.reopen(user_id, task_id, idempotency_key=idempotency_key)).value

    async def delete(self, user_id: str, task_id: int, *, idempotency_key: str | None = None) -> Task:
        return (await self.tasks.delete(user_id, task_id, idempotency_key=idempotency_key)).value

    async def create_next_occurrence(self, completed: Task) -> Task | None:
        return await self.next_occurrences.create(completed)

    async def create_next_occurrences(self, completed: Sequence[Task]) -> list[Task | None]:
        return await self.next_occurrences.create_many(completed)

    async def list(self, user_id: str, request: ListRequest) -> tuple[TaskPage, LocalCalendar]:
        """A page of tasks, and the user's calendar the relative filters were resolved in."""
        page = await self.tasks.list(user_id, request)
        return page.value, page.calendar
