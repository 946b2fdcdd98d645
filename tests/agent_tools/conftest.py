"""Agent tools under test: a runtime on a ManualClock (workers settled explicitly), the MCP tools
in memory, and a few helpers to read results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mcp import Client

from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from doable.domain.task import Task
from mcp_server.identity import fixed_user
from mcp_server.server import build_mcp
from tests.workers.conftest import rt, settle, tasks_of, worker_settings  # noqa: F401  (fixtures)

McpFor = Callable[[str], AbstractAsyncContextManager[Client]]
THURSDAY_NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(THURSDAY_NOON)


@pytest.fixture
def mcp_for(rt: Runtime) -> McpFor:  # noqa: F811
    """`async with mcp_for("alice") as client:` the MCP tools in memory, acting for alice."""

    @asynccontextmanager
    async def connect(user: str) -> AsyncIterator[Client]:
        server = build_mcp(rt.service, fixed_user(user), inbox=rt.inbox, history=rt.history)
        async with Client(server) as client:
            yield client

    return connect  # type: ignore[return-value]


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def error_of(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text  # type: ignore[union-attr]


def wall(task: Task | None, tz: str = "UTC") -> str:
    assert task is not None and task.due_at is not None
    return task.due_at.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M")


async def pending(runtime: Runtime, user: str = "alice") -> list[Task]:
    return await tasks_of(runtime, user, "pending")


async def complete_and_settle(runtime: Runtime, task_id: int, user: str = "alice") -> Task | None:
    """Complete `task_id`, let the recurrence worker run; the one occurrence that followed, if any."""
    before = {t.task_id for t in await tasks_of(runtime, user)}
    await runtime.service.complete(user, task_id)
    await settle(runtime)
    created = [t for t in await tasks_of(runtime, user) if t.task_id not in before]
    assert len(created) <= 1, created
    return created[0] if created else None
