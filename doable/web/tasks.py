"""REST: /api/tasks and /api/profile over the same service the MCP tools use."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from doable.bulk import Bulk, BulkView, bulk_view
from doable.inputs import ListRequest, NewTask, TaskChanges
from doable.series_service import SeriesActions
from doable.service import TaskService
from doable.undo import Receipt, Undo, UndoView, undo_view
from doable.views import ProfileView, TaskListView, TaskView, list_view, profile_view, task_view
from doable.web.security import CurrentUser

router = APIRouter(prefix="/api", tags=["tasks"])
TaskId = Annotated[int, Path(ge=1, le=2**53, description="The task's per-user id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=128, description="A retry with the same key returns the first result."),
]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token"},
    404: {"description": "No such task for this user"},
    422: {"description": "Invalid input; the body names the field and rule"},
}


class TimezoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: Annotated[str, Field(max_length=64, description="IANA name, e.g. 'Europe/Berlin'.")]


class UndoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[str, Field(max_length=64, description="The Undo-Token header of a change's response.")]


class BulkIn(BaseModel):
    """A bulk change: first without `confirm_token` (a preview that changes nothing), then with it."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["complete", "reopen", "delete", "reschedule"] | None = None
    task_ids: Annotated[list[int] | None, Field(max_length=200)] = None
    filter: Annotated[str | None, Field(max_length=500, description="Text filter, as in GET /api/tasks.")] = None
    due: Annotated[str | None, Field(max_length=64, description="reschedule: new due; a date keeps each time.")] = None
    confirm_token: Annotated[str | None, Field(max_length=64)] = None


# Every change answers with a token that undoes it (POST /api/undo), in this header.
UNDO_HEADER = "Undo-Token"


def _undo_header(response: Response, receipt: Receipt) -> None:
    if receipt.undo:
        response.headers[UNDO_HEADER] = receipt.undo


def _service(request: Request) -> TaskService:
    service: TaskService = request.app.state.runtime.service
    return service


@router.get("/tasks", response_model=TaskListView, responses=ERRORS)
async def list_tasks(request: Request, user: CurrentUser, query: Annotated[ListRequest, Query()]) -> TaskListView:
    """List, search, filter, sort and paginate the user's tasks."""
    page, cal = await _service(request).list(user.user_id, query)
    return list_view(page, cal)


@router.post("/tasks", status_code=201, response_model=TaskView, responses=ERRORS)
async def add_task(
    request: Request, response: Response, user: CurrentUser, body: NewTask, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    receipt = Receipt()
    task = await service.add(user.user_id, body, idempotency_key=idempotency_key, receipt=receipt)
    _undo_header(response, receipt)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.get("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def get_task(request: Request, user: CurrentUser, task_id: TaskId) -> TaskView:
    service = _service(request)
    return task_view(await service.get(user.user_id, task_id), (await service.get_profile(user.user_id)).tz)


@router.patch("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def update_task(
    request: Request,
    response: Response,
    user: CurrentUser,
    task_id: TaskId,
    body: TaskChanges,
    idempotency_key: IdempotencyKey = None,
    scope: Annotated[
        Literal["this", "future", "all"], Query(description="A repeating task: this occurrence, it and later, or all.")
    ] = "future",
) -> TaskView:
    """Partial update: omitted fields stay; an explicit null clears the field."""
    service = _service(request)
    receipt = Receipt()
    task = await service.update(
        user.user_id, task_id, body, idempotency_key=idempotency_key, scope=scope, receipt=receipt
    )
    _undo_header(response, receipt)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.post("/tasks/{task_id}/complete", response_model=TaskView, responses=ERRORS)
async def complete_task(
    request: Request, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    receipt = Receipt()
    task = await service.complete(user.user_id, task_id, idempotency_key=idempotency_key, receipt=receipt)
    _undo_header(response, receipt)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.post("/tasks/{task_id}/reopen", response_model=TaskView, responses=ERRORS)
async def reopen_task(
    request: Request, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    receipt = Receipt()
    task = await service.reopen(user.user_id, task_id, idempotency_key=idempotency_key, receipt=receipt)
    _undo_header(response, receipt)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.delete("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def delete_task(
    request: Request, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    service = _service(request)
    receipt = Receipt()
    task = await service.delete(user.user_id, task_id, idempotency_key=idempotency_key, receipt=receipt)
    _undo_header(response, receipt)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.post("/tasks/{task_id}/skip", response_model=TaskView, responses=ERRORS)
async def skip_occurrence(
    request: Request, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    """Skip this occurrence of a repeating task: it moves to the series' next date."""
    service = _service(request)
    receipt = Receipt()
    task = await SeriesActions(service).skip(user.user_id, task_id, idempotency_key=idempotency_key, receipt=receipt)
    _undo_header(response, receipt)
    return task_view(task, (await service.get_profile(user.user_id)).tz)


@router.post("/tasks/bulk", response_model=BulkView, responses={**ERRORS, 409: {"description": "Changed since"}})
async def bulk_tasks(
    request: Request, response: Response, user: CurrentUser, body: BulkIn, idempotency_key: IdempotencyKey = None
) -> BulkView:
    """Complete, reopen, delete or reschedule many tasks: a preview with a confirm_token first
    (nothing changes); the call with that token applies the change to exactly those tasks."""
    service = _service(request)
    receipt = Receipt()
    outcome = await Bulk(service).run(
        user.user_id,
        body.action,
        task_ids=body.task_ids,
        filter=body.filter,
        due=body.due,
        confirm_token=body.confirm_token,
        idempotency_key=idempotency_key,
        receipt=receipt,
    )
    _undo_header(response, receipt)
    return bulk_view(outcome, (await service.get_profile(user.user_id)).tz, receipt.undo)


@router.post("/undo", response_model=UndoView, responses={**ERRORS, 409: {"description": "Changed since"}})
async def undo(
    request: Request, response: Response, user: CurrentUser, body: UndoIn, idempotency_key: IdempotencyKey = None
) -> UndoView:
    """Reverse the change an Undo-Token was issued for (within 24 hours; 409 if it changed since).
    The answer's Undo-Token undoes the undo (a redo)."""
    receipt = Receipt()
    result = await Undo(_service(request)).undo(
        user.user_id, body.token, idempotency_key=idempotency_key, receipt=receipt
    )
    _undo_header(response, receipt)
    return undo_view(result, receipt.undo)


@router.get("/profile", response_model=ProfileView, responses=ERRORS)
async def get_profile(request: Request, user: CurrentUser) -> ProfileView:
    service = _service(request)
    return profile_view(user.user_id, service.calendar(await service.get_profile(user.user_id)))


@router.put("/profile", response_model=ProfileView, responses=ERRORS)
async def set_timezone(request: Request, response: Response, user: CurrentUser, body: TimezoneIn) -> ProfileView:
    service = _service(request)
    receipt = Receipt()
    profile = await service.set_timezone(user.user_id, body.timezone, receipt=receipt)
    _undo_header(response, receipt)
    return profile_view(user.user_id, service.calendar(profile)).model_copy(update={"undo": receipt.undo})
