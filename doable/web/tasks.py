"""REST: /api/tasks and /api/profile over the same service the MCP tools use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from doable.inputs import ListRequest, NewTask, TaskChanges
from doable.service import TaskService
from doable.views import ProfileView, TaskListView, TaskView, list_view, profile_view, task_view
from doable.web.security import CurrentUser

router = APIRouter(prefix="/api", tags=["tasks"])
TaskId = Annotated[int, Path(ge=1, le=2**53, description="The task's per-user id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=128, description="A retry with the same key returns the first result."),
]

ERRORS = {
    401: {"description": "Missing or invalid bearer token"},
    404: {"description": "No such task for this user"},
    422: {"description": "Invalid input; the body names the field and rule"},
}


class TimezoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: Annotated[str, Field(max_length=64, description="IANA name, e.g. 'Europe/Berlin'.")]


def _service(request: Request) -> TaskService:
    service: TaskService = request.app.state.runtime.service
    return service


@router.get("/tasks", response_model=TaskListView, responses=ERRORS)
async def list_tasks(request: Request, user: CurrentUser, query: Annotated[ListRequest, Query()]) -> TaskListView:
    """List, search, filter, sort and paginate the user's tasks."""
    page, cal = await _service(request).list(user.user_id, query)
    return list_view(page, cal)


@router.post("/tasks", status_code=201, response_model=TaskView, responses=ERRORS)
async def add_task(request: Request, user: CurrentUser, body: NewTask, idempotency_key: IdempotencyKey = None) -> TaskView:
    service = _service(request)
    task = await service.add(user.user_id, body, idempotency_key=idempotency_key)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.get("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def get_task(request: Request, user: CurrentUser, task_id: TaskId) -> TaskView:
    service = _service(request)
    return task_view(await service.get(user.user_id, task_id), (await service.get_profile(user.user_id)).tz)


@router.patch("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def update_task(
    request: Request, user: CurrentUser, task_id: TaskId, body: TaskChanges, idempotency_key: IdempotencyKey = None
) -> TaskView:
    """Partial update: omitted fields stay; an explicit null clears the field."""
    service = _service(request)
    task = await service.update(user.user_id, task_id, body, idempotency_key=idempotency_key)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.post("/tasks/{task_id}/complete", response_model=TaskView, responses=ERRORS)
async def complete_task(
    request: Request, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    task = await service.complete(user.user_id, task_id, idempotency_key=idempotency_key)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.post("/tasks/{task_id}/reopen", response_model=TaskView, responses=ERRORS)
async def reopen_task(
    request: Request, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    task = await service.reopen(user.user_id, task_id, idempotency_key=idempotency_key)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.delete("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def delete_task(
    request: Request, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    task = await service.delete(user.user_id, task_id, idempotency_key=idempotency_key)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.get("/profile", response_model=ProfileView, responses=ERRORS)
async def get_profile(request: Request, user: CurrentUser) -> ProfileView:
    service = _service(request)
    return profile_view(user.user_id, service.calendar(await service.get_profile(user.user_id)))


@router.put("/profile", response_model=ProfileView, responses=ERRORS)
async def set_timezone(request: Request, user: CurrentUser, body: TimezoneIn) -> ProfileView:
    service = _service(request)
    return profile_view(user.user_id, service.calendar(await service.set_timezone(user.user_id, body.timezone)))
