"""REST: task history (the audit worker's log), per user."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query

from doable.domain.query import INT64_MAX
from doable.usecases.history import LIMIT_MAX, HistoryView, history_view
from doable.usecases.service import TaskService
from doable.web.deps import HistoryDep, TaskServiceDep
from doable.web.security import CurrentUser

router = APIRouter(prefix="/api")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token"},
    422: {"description": "Invalid input"},
}


async def _tz(service: TaskService, user_id: str) -> ZoneInfo:
    return (await service.get_profile(user_id)).tz


@router.get("/history", response_model=HistoryView, responses=ERRORS)
async def recent_history(
    history: HistoryDep,
    service: TaskServiceDep,
    user: CurrentUser,
    limit: Annotated[int | None, Query(ge=1, le=LIMIT_MAX)] = None,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="next_before of the previous page.")] = None,
) -> HistoryView:
    """Recent activity on all the user's tasks, newest first."""
    entries = await history.list(user.user_id, limit=limit, before_id=before)
    return history_view(entries, await _tz(service, user.user_id), limit)


@router.get("/tasks/{task_id}/history", response_model=HistoryView, responses=ERRORS)
async def task_history(
    history: HistoryDep,
    service: TaskServiceDep,
    user: CurrentUser,
    task_id: Annotated[int, Path(ge=1, le=2**53)],
    limit: Annotated[int | None, Query(ge=1, le=LIMIT_MAX)] = None,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
) -> HistoryView:
    """One task's history (kept after the task is deleted), newest first."""
    entries = await history.list(user.user_id, task_id=task_id, limit=limit, before_id=before)
    return history_view(entries, await _tz(service, user.user_id), limit)
