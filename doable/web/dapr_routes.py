"""The routes Dapr calls on the API app in Dapr mode (embedded `doable serve` never mounts them):

- the API's own subscriptions (`task-updates`, `notifications` → this replica's live streams):
  `GET /dapr/subscribe`, `POST /events/{name}` (doable.web.callbacks);
- the service-invocation endpoints the workers call (doable.adapters.dapr.invocation):
  `POST /internal/tasks/lookup` (reminders worker) and `POST /internal/occurrences/next`
  (recurrence worker).

Who may call: with `APP_API_TOKEN` set, the sidecar adds it to every call (`dapr-api-token`)
and nothing without it gets in. Without one, only loopback clients (the sidecar runs in the
pod) do: the API's port is public, and these routes act for any user. The internal routes
also check the calling app-id (`dapr-caller-app-id`, set by the caller's sidecar) against an
allow-list per route, on top of the Configuration's access control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from doable.adapters.dapr.invocation import INTERNAL_CALLERS, LOOKUP_MANY_MAX, NEXT_OCCURRENCE_PATH, TASK_LOOKUP_PATH
from doable.domain.clock import Clock
from doable.domain.errors import NotFound
from doable.domain.task import Task
from doable.ports.messages import Subscription
from doable.usecases.service import TaskService
from doable.web.callbacks import callback_router, sidecar_only


async def caller_allowed(request: Request) -> None:
    allowed = INTERNAL_CALLERS.get(request.url.path, frozenset())
    caller = request.headers.get("dapr-caller-app-id", "")
    if caller not in allowed:
        raise HTTPException(status_code=403, detail=f"app {caller or '(none)'} may not call {request.url.path}")


class TaskLookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)
    task_id: int = Field(ge=1)


class TaskLookupManyRequest(BaseModel):
    """Several tasks at once (the reminders worker's batches): one invocation per batch."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskLookupRequest] = Field(min_length=1, max_length=LOOKUP_MANY_MAX)


class NextOccurrenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completed: Task


class TaskAnswer(BaseModel):
    task: dict[str, Any] | None


class TasksAnswer(BaseModel):
    """One entry per asked task, in order: null when it does not exist."""

    tasks: list[dict[str, Any] | None]


def internal_router(service: TaskService) -> APIRouter:
    router = APIRouter(
        prefix="/internal", tags=["internal"], include_in_schema=False, dependencies=[Depends(caller_allowed)]
    )

    @router.post(TASK_LOOKUP_PATH.removeprefix("/internal"))
    async def lookup(body: TaskLookupRequest | TaskLookupManyRequest) -> TaskAnswer | TasksAnswer:
        """The task as it is now (404 when it does not exist); for `tasks`, each of them."""
        if isinstance(body, TaskLookupManyRequest):
            keys = [(t.user_id, t.task_id) for t in body.tasks]
            found = await service.get_many(keys)
            return TasksAnswer(tasks=[t.model_dump(mode="json") if (t := found.get(k)) else None for k in keys])
        try:
            task = await service.get(body.user_id, body.task_id)
        except NotFound:
            raise HTTPException(status_code=404, detail=f"task {body.task_id} not found") from None
        return TaskAnswer(task=task.model_dump(mode="json"))

    @router.post(NEXT_OCCURRENCE_PATH.removeprefix("/internal"))
    async def next_occurrence(body: NextOccurrenceRequest) -> TaskAnswer:
        """Create (once) the occurrence after `completed`; `task` is null when the series ended."""
        created = await service.create_next_occurrence(body.completed)
        return TaskAnswer(task=created.model_dump(mode="json") if created is not None else None)

    return router


def dapr_router(
    service: TaskService, subscriptions: Sequence[Subscription], *, clock: Clock, app_token: str | None
) -> APIRouter:
    """The Dapr-facing routes of the API app (Dapr mode only): this replica's subscriptions (its
    live streams) and the internal routes, all behind the sidecar guard."""
    router = APIRouter(dependencies=[Depends(sidecar_only(app_token))])
    router.include_router(callback_router(subscriptions, clock=clock, app_token=app_token))
    router.include_router(internal_router(service))
    return router
