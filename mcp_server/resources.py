"""Resources a person can attach to a conversation: today's tasks (`tasks://today`) and one task by
URI (`tasks://task/{id}`). Read as the same verified user as the tools (the server's user
resolver), never from the URI; another user's task is simply not found.

They cost the model nothing until someone attaches one: resources are not in the tool list.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import BaseModel

from doable.domain.errors import DoableError, NotFound
from doable.domain.query import SortField, Status
from doable.usecases.inputs import ListRequest
from doable.usecases.views import list_page, task_result
from mcp_server.tooling import ToolDeps

TODAY_URI = "tasks://today"
TASK_URI = "tasks://task/{id}"
JSON = "application/json"
# Today's list shows at most this many tasks (it says how many there are in all).
TODAY_MAX = 100
# The same cut as list_tasks: get the task by URI to read a description whole.
DESCRIPTION_MAX = 200


def _text(view: BaseModel | dict[str, Any]) -> str:
    data = view.model_dump(mode="json") if isinstance(view, BaseModel) else view
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


async def _read(work: Callable[[], Awaitable[str]], uri: str) -> str:
    """Domain errors as resource errors with their own message (a not-found is -32602, as the
    spec asks); anything else stays a crash the SDK reports without details."""
    try:
        return await work()
    except NotFound:
        raise ResourceNotFoundError(f"not_found: no such task: {uri}") from None
    except DoableError as exc:
        raise ResourceError(str(exc)) from None


def add_resources(mcp: MCPServer[Any], deps: ToolDeps) -> None:
    @mcp.resource(
        TODAY_URI,
        name="today",
        title="Today's tasks",
        description="Pending tasks due today or overdue, in the user's timezone, soonest first.",
        mime_type=JSON,
    )
    async def today() -> str:
        async def work() -> str:
            request = ListRequest(status=Status.PENDING, filter="overdue | today", sort=SortField.DUE, limit=TODAY_MAX)
            page = await deps.tasks.list(deps.user(), request)
            return _text(list_page(page.value, page.calendar, description_max=DESCRIPTION_MAX))

        return await _read(work, TODAY_URI)

    @mcp.resource(
        TASK_URI,
        name="task",
        title="A task",
        description="One task with all its details, e.g. tasks://task/12.",
        mime_type=JSON,
    )
    async def task(id: str) -> str:
        uri = TASK_URI.replace("{id}", id)

        async def work() -> str:
            uid = deps.user()
            if not id.isdigit() or not 1 <= int(id) <= 2**53:
                raise NotFound(f"no such task: {uri}")
            found = await deps.tasks.get(uid, int(id))
            return _text(task_result(found.value, "found", found.calendar.tz))

        return await _read(work, uri)
