"""REST: /api/tasks and /api/profile over the same use cases the MCP tools use.

Each handler calls one use case and hands its `Outcome` to the presenter of that use case's
result: the presenter sets the Undo-Token header and shows times in the user's timezone, read in
the use case's own unit of work (one transaction per request)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from doable.domain.profile import Profile
from doable.domain.query import TaskPage
from doable.domain.task import Task
from doable.usecases.bulk import BulkOutcome, BulkView, bulk_view
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from doable.usecases.runner import Outcome
from doable.usecases.undo import UndoResult, UndoView, undo_view
from doable.usecases.views import ProfileView, TaskListView, TaskView, list_page, profile_view, task_view
from doable.web.deps import TaskServiceDep
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


def _undo_header(response: Response, outcome: Outcome[object]) -> None:
    if outcome.undo:
        response.headers[UNDO_HEADER] = outcome.undo


def present_task(response: Response, outcome: Outcome[Task]) -> TaskView:
    _undo_header(response, outcome)
    return task_view(outcome.value, outcome.calendar.tz)


def present_list(outcome: Outcome[TaskPage]) -> dict[str, Any]:
    # The page's JSON as it is: the route's response model checks it (a model here was checked twice).
    return list_page(outcome.value, outcome.calendar)


def present_bulk(response: Response, outcome: Outcome[BulkOutcome]) -> BulkView:
    _undo_header(response, outcome)
    return bulk_view(outcome.value, outcome.calendar.tz, outcome.undo)


def present_undo(response: Response, outcome: Outcome[UndoResult]) -> UndoView:
    _undo_header(response, outcome)
    return undo_view(outcome.value, outcome.undo)


def present_profile(response: Response | None, outcome: Outcome[Profile]) -> ProfileView:
    if response is not None:
        _undo_header(response, outcome)
    view = profile_view(outcome.value.user_id, outcome.calendar)
    return view.model_copy(update={"undo": outcome.undo}) if outcome.undo else view


@router.get("/tasks", response_model=TaskListView, responses=ERRORS)
async def list_tasks(
    service: TaskServiceDep, user: CurrentUser, query: Annotated[ListRequest, Query()]
) -> dict[str, Any]:
    """List, search, filter, sort and paginate the user's tasks."""
    return present_list(await service.tasks.list(user.user_id, query))


@router.post("/tasks", status_code=201, response_model=TaskView, responses=ERRORS)
async def add_task(
    service: TaskServiceDep, response: Response, user: CurrentUser, body: NewTask, idempotency_key: IdempotencyKey = None
) -> TaskView:
    return present_task(response, await service.tasks.add(user.user_id, body, idempotency_key=idempotency_key))


@router.get("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def get_task(service: TaskServiceDep, response: Response, user: CurrentUser, task_id: TaskId) -> TaskView:
    return present_task(response, await service.tasks.get(user.user_id, task_id))


@router.patch("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def update_task(
    service: TaskServiceDep,
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
    done = await service.tasks.update(user.user_id, task_id, body, idempotency_key=idempotency_key, scope=scope)
    return present_task(response, done)


@router.post("/tasks/{task_id}/complete", response_model=TaskView, responses=ERRORS)
async def complete_task(
    service: TaskServiceDep, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    return present_task(response, await service.tasks.complete(user.user_id, task_id, idempotency_key=idempotency_key))


@router.post("/tasks/{task_id}/reopen", response_model=TaskView, responses=ERRORS)
async def reopen_task(
    service: TaskServiceDep, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    return present_task(response, await service.tasks.reopen(user.user_id, task_id, idempotency_key=idempotency_key))


@router.delete("/tasks/{task_id}", response_model=TaskView, responses=ERRORS)
async def delete_task(
    service: TaskServiceDep, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    return present_task(response, await service.tasks.delete(user.user_id, task_id, idempotency_key=idempotency_key))


@router.post("/tasks/{task_id}/skip", response_model=TaskView, responses=ERRORS)
async def skip_occurrence(
    service: TaskServiceDep, response: Response, user: CurrentUser, task_id: TaskId, idempotency_key: IdempotencyKey = None
) -> TaskView:
    """Skip this occurrence of a repeating task: it moves to the series' next date."""
    return present_task(response, await service.series.skip(user.user_id, task_id, idempotency_key=idempotency_key))


@router.post("/tasks/bulk", response_model=BulkView, responses={**ERRORS, 409: {"description": "Changed since"}})
async def bulk_tasks(
    service: TaskServiceDep, response: Response, user: CurrentUser, body: BulkIn, idempotency_key: IdempotencyKey = None
) -> BulkView:
    """Complete, reopen, delete or reschedule many tasks: a preview with a confirm_token first
    (nothing changes); the call with that token applies the change to exactly those tasks."""
    outcome = await service.bulk.run(
        user.user_id,
        body.action,
        task_ids=body.task_ids,
        filter=body.filter,
        due=body.due,
        confirm_token=body.confirm_token,
        idempotency_key=idempotency_key,
    )
    return present_bulk(response, outcome)


@router.post("/undo", response_model=UndoView, responses={**ERRORS, 409: {"description": "Changed since"}})
async def undo(
    service: TaskServiceDep, response: Response, user: CurrentUser, body: UndoIn, idempotency_key: IdempotencyKey = None
) -> UndoView:
    """Reverse the change an Undo-Token was issued for (within 24 hours; 409 if it changed since).
    The answer's Undo-Token undoes the undo (a redo)."""
    return present_undo(response, await service.undoer.undo(user.user_id, body.token, idempotency_key=idempotency_key))


@router.get("/profile", response_model=ProfileView, responses=ERRORS)
async def get_profile(service: TaskServiceDep, user: CurrentUser) -> ProfileView:
    return present_profile(None, await service.tasks.get_profile(user.user_id))


@router.put("/profile", response_model=ProfileView, responses=ERRORS)
async def set_timezone(service: TaskServiceDep, response: Response, user: CurrentUser, body: TimezoneIn) -> ProfileView:
    return present_profile(response, await service.tasks.set_timezone(user.user_id, body.timezone))
