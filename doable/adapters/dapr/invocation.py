"""Workers calling the API by Dapr service invocation: the reminders worker reads a task as it is
now (`TaskLookup`), the recurrence worker has the next occurrence created (`OccurrenceCreator`).

The call goes `POST /v1.0/invoke/doable-api/method/internal/...` through both sidecars; the API
authenticates the calling *service* (its sidecar's app token and `dapr-caller-app-id`, see
`doable.web.dapr_routes`), never a user. Only `/internal/**` is used: the Dapr Configuration's
access control allows the workers nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
import httpx2
import structlog

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.messaging import traceparent
from doable.domain.errors import Conflict, InvalidArgument, NotFound, Unavailable
from doable.domain.task import Task
from doable.platform.logs import current_trace_id
from doable.platform.topology import API_APP_ID, WORKER_APP_IDS

log = structlog.get_logger("doable.dapr")

TASK_LOOKUP_PATH = "/internal/tasks/lookup"
NEXT_OCCURRENCE_PATH = "/internal/occurrences/next"
# Tasks one lookup may ask for (`{"tasks": [...]}` on TASK_LOOKUP_PATH).
LOOKUP_MANY_MAX = 500
# Users whose next occurrences one batch creates at once: enough to hide the two sidecars' round
# trips, few enough to leave the API's connection pool to other callers.
OCCURRENCE_CALLS_IN_FLIGHT = 8
# Which app-ids may call each internal route: the API checks `dapr-caller-app-id` against it,
# and the chart's access control (dapr.accessControl.policies) lets exactly these through.
INTERNAL_CALLERS: dict[str, frozenset[str]] = {
    TASK_LOOKUP_PATH: frozenset({WORKER_APP_IDS["reminders"]}),
    NEXT_OCCURRENCE_PATH: frozenset({WORKER_APP_IDS["recurrence"]}),
}


def _error(response: httpx2.Response, what: str) -> Exception:
    """The domain error an answer of the API stands for (so the worker answers RETRY or DROP)."""
    try:
        message = str(response.json().get("message", response.text))
    except ValueError:
        message = response.text
    if response.status_code == 404:
        return NotFound(message)
    if response.status_code == 409:
        return Conflict(message)
    if response.status_code == 422:
        return InvalidArgument(what, message)
    if response.status_code in (401, 403):
        # Misconfiguration (app token, access control): retrying lets a fixed deployment catch up.
        log.error("invoke.refused", status=response.status_code, path=what, detail=message[:200])
        return Unavailable(
            f"the API refused the service call ({response.status_code}); check the app token and access control"
        )
    return Unavailable(f"the API answered {response.status_code}")


def _task(body: Any) -> Task | None:
    raw = body.get("task") if isinstance(body, dict) else None
    return Task.model_validate(raw) if raw is not None else None


class DaprTaskLookup:
    """TaskLookup by service invocation of the API."""

    def __init__(self, client: DaprClient, app_id: str = API_APP_ID) -> None:
        self._client = client
        self._app_id = app_id

    async def get(self, user_id: str, task_id: int) -> Task | None:
        response = await self._client.invoke(
            self._app_id,
            TASK_LOOKUP_PATH,
            body={"user_id": user_id, "task_id": task_id},
            traceparent=traceparent(current_trace_id()),
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _error(response, "task")
        return _task(response.json())

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        """`get` for many tasks, LOOKUP_MANY_MAX per invocation (the ones that exist). An API
        that predates the batch form answers 422: then one by one."""
        unique = list(dict.fromkeys(keys))
        found: dict[tuple[str, int], Task] = {}
        for start in range(0, len(unique), LOOKUP_MANY_MAX):
            chunk = unique[start : start + LOOKUP_MANY_MAX]
            response = await self._client.invoke(
                self._app_id,
                TASK_LOOKUP_PATH,
                body={"tasks": [{"user_id": u, "task_id": t} for u, t in chunk]},
                traceparent=traceparent(current_trace_id()),
            )
            if response.status_code == 422:
                for key in chunk:
                    if (task := await self.get(*key)) is not None:
                        found[key] = task
                continue
            if response.status_code != 200:
                raise _error(response, "task")
            answered = response.json().get("tasks") if isinstance(response.json(), dict) else None
            if not isinstance(answered, list) or len(answered) != len(chunk):
                raise Unavailable("the task lookup answered an unexpected body")
            for key, raw in zip(chunk, answered, strict=True):
                if raw is not None:
                    found[key] = Task.model_validate(raw)
        return found


class DaprOccurrences:
    """OccurrenceCreator by service invocation of the API (idempotent there: series links)."""

    def __init__(self, client: DaprClient, app_id: str = API_APP_ID) -> None:
        self._client = client
        self._app_id = app_id

    async def create_next(self, completed: Task) -> Task | None:
        response = await self._client.invoke(
            self._app_id,
            NEXT_OCCURRENCE_PATH,
            body={"completed": completed.model_dump(mode="json")},
            traceparent=traceparent(current_trace_id()),  # the event's trace continues in the API
        )
        if response.status_code != 200:
            raise _error(response, "completed")
        return _task(response.json())

    async def create_next_many(self, completed: Sequence[Task]) -> list[Task | None]:
        """`create_next` for each of `completed`, in order per user (one user's completions may
        follow each other in one series), different users concurrently, OCCURRENCE_CALLS_IN_FLIGHT
        at a time. Raises the first failure (in the batch's order) once all have been tried; what
        the others created is kept, and found rather than repeated when the batch is handled again
        (the API creates one successor per series and due date)."""
        by_user: dict[str, list[int]] = {}
        for i, task in enumerate(completed):
            by_user.setdefault(task.user_id, []).append(i)
        created: list[Task | None] = [None] * len(completed)
        failures: dict[int, BaseException] = {}
        limiter = anyio.CapacityLimiter(OCCURRENCE_CALLS_IN_FLIGHT)

        async def one_user(indexes: list[int]) -> None:
            async with limiter:
                for i in indexes:
                    try:
                        created[i] = await self.create_next(completed[i])
                    except Exception as exc:
                        failures[i] = exc
                        return  # the user's later completions wait for the retry, in order

        await asyncio.gather(*(one_user(indexes) for indexes in by_user.values()))
        if failures:
            raise failures[min(failures)]
        return created
