"""The MCP tools through the SDK's client over streamable HTTP, authenticated with bearer tokens."""

from __future__ import annotations

from typing import Any

from doable.bootstrap import Runtime
from tests.e2e.conftest import McpConnect


async def call(client: Any, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def error_of(client: Any, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


async def test_spec_tools_keep_the_spec_shapes(mcp_as: McpConnect) -> None:
    async with mcp_as("alice") as c:
        added = await call(c, "add_task", title="Buy groceries", description="milk, eggs")
        assert {k: added[k] for k in ("task_id", "status", "title")} == {
            "task_id": 1,
            "status": "created",
            "title": "Buy groceries",
        }
        listed = await call(c, "list_tasks", status="pending")
        assert [{k: t[k] for k in ("id", "title", "completed")} for t in listed["tasks"]] == [
            {"id": 1, "title": "Buy groceries", "completed": False}
        ]
        updated = await call(c, "update_task", task_id=1, title="Buy groceries and fruits")
        assert (updated["task_id"], updated["status"], updated["title"]) == (1, "updated", "Buy groceries and fruits")
        done = await call(c, "complete_task", task_id=1)
        assert (done["status"], done["task"]["completed"]) == ("completed", True)
        deleted = await call(c, "delete_task", task_id=1)
        assert (deleted["task_id"], deleted["status"]) == (1, "deleted")
        assert (await call(c, "list_tasks"))["tasks"] == []


async def test_full_featured_task_lifecycle(mcp_as: McpConnect, runtime: Runtime) -> None:
    """The issue's "done when": priority, tags, due, reminder, weekly recurrence; find, filter, sort, complete, delete."""
    async with mcp_as("alice") as c:
        await call(c, "set_timezone", timezone="Europe/Berlin")
        task = await call(
            c,
            "add_task",
            title="Team sync",
            priority="high",
            tags=["Work", "meetings"],
            due="2026-12-07T09:00",
            reminders=[{"minutes_before": 15}],
            recurrence={"rule": "weekly", "count": 10},
        )
        t = task["task"]
        assert t["due"] == "2026-12-07T09:00:00+01:00"
        assert t["tags"] == ["work", "meetings"]
        assert t["reminders"][0]["fires_at"] == "2026-12-07T08:45:00+01:00"
        assert t["recurrence"]["rule"] == "FREQ=WEEKLY;COUNT=10"
        await call(c, "add_task", title="Buy milk", priority="low")
        found = await call(c, "list_tasks", search="SYNC", priority=["high"], tags=["work"], sort="due")
        assert [x["title"] for x in found["tasks"]] == ["Team sync"]
        assert found["timezone"] == "Europe/Berlin" and found["total"] == 1
        by_priority = await call(c, "list_tasks", sort="priority")
        assert [x["title"] for x in by_priority["tasks"]] == ["Team sync", "Buy milk"]
        await call(c, "complete_task", task_id=t["id"])
        completed = await call(c, "list_tasks", status="completed")
        assert [x["id"] for x in completed["tasks"]] == [t["id"]]
        await call(c, "delete_task", task_id=t["id"])
    async with mcp_as("bob") as other:
        assert (await call(other, "list_tasks"))["tasks"] == []
        assert (await call(other, "list_tasks", search="milk"))["total"] == 0
    history = await runtime.outbox.history("alice", t["id"])
    assert [e.event_type for e in reversed(history)] == ["created", "completed", "deleted"]


async def test_update_clears_only_what_is_explicitly_null(mcp_as: McpConnect) -> None:
    async with mcp_as("alice") as c:
        await call(c, "add_task", title="Report", description="draft", due="2026-12-01T10:00", tags=["work"])
        kept = await call(c, "update_task", task_id=1, title="Final report")
        assert (kept["task"]["description"], kept["task"]["due"], kept["task"]["tags"]) == (
            "draft",
            "2026-12-01T10:00:00+00:00",
            ["work"],
        )
        cleared = await call(c, "update_task", task_id=1, due=None, description=None)
        assert (cleared["task"]["due"], cleared["task"]["description"], cleared["task"]["tags"]) == (None, "", ["work"])


async def test_errors_name_the_field_and_change_nothing(mcp_as: McpConnect, runtime: Runtime) -> None:
    async with mcp_as("alice") as c:
        await call(c, "add_task", title="Keep me")
        assert "not_found: task 7 not found" in await error_of(c, "complete_task", task_id=7)
        assert "title: must be 1-200 characters" in await error_of(c, "add_task", title=" " * 3)
        assert "due: must be ISO 8601" in await error_of(c, "add_task", title="x", due="next tuesday")
        assert "recurrence: needs a due date" in await error_of(c, "add_task", title="x", recurrence="daily")
        assert "timezone" in await error_of(c, "set_timezone", timezone="Mars/Base")
        assert "priority" in await error_of(c, "add_task", title="x", priority="urgent")
        assert "limit" in await error_of(c, "list_tasks", limit=500)
        assert "unknown argument(s) owner" in await error_of(c, "add_task", title="x", owner="bob")
        listed = await call(c, "list_tasks")
        assert [t["title"] for t in listed["tasks"]] == ["Keep me"]
    assert len(await runtime.outbox.history("alice")) == 1  # only the one successful add recorded an event


async def test_forged_user_id_is_refused_and_isolation_holds(mcp_as: McpConnect) -> None:
    async with mcp_as("alice") as alice:
        secret = await call(alice, "add_task", title="Alice's secret")
        assert (await call(alice, "list_tasks", user_id="alice"))["total"] == 1
    async with mcp_as("bob") as bob:
        message = await error_of(bob, "list_tasks", user_id="alice")
        assert "permission_denied" in message
        assert "permission_denied" in await error_of(bob, "delete_task", task_id=secret["task_id"], user_id="alice")
        for tool in ("get_task", "complete_task", "reopen_task", "delete_task"):
            assert "not_found" in await error_of(bob, tool, task_id=secret["task_id"])
        assert "not_found" in await error_of(bob, "update_task", task_id=secret["task_id"], title="pwned")
        assert (await call(bob, "list_tasks", search="secret"))["total"] == 0
    async with mcp_as("alice") as alice:
        assert (await call(alice, "get_task", task_id=secret["task_id"]))["task"]["title"] == "Alice's secret"


async def test_tool_list_is_small_and_typed(mcp_as: McpConnect) -> None:
    async with mcp_as("alice") as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert {"add_task", "list_tasks", "complete_task", "delete_task", "update_task", "get_task", "reopen_task"} <= set(
        tools
    )
    add = tools["add_task"]
    assert add.output_schema is not None
    assert add.input_schema["required"] == ["title"]
    assert "user_id" in add.input_schema["properties"]


async def test_a_retried_add_with_the_same_idempotency_key_creates_one_task(mcp_as: McpConnect) -> None:
    async with mcp_as("alice") as c:
        first = await call(c, "add_task", title="Pay rent", idempotency_key="req-1")
        again = await call(c, "add_task", title="Pay rent", idempotency_key="req-1")
        assert first["task_id"] == again["task_id"]
        assert (await call(c, "list_tasks"))["total"] == 1
        assert "different request" in await error_of(c, "add_task", title="Other", idempotency_key="req-1")
        done = await call(c, "delete_task", task_id=first["task_id"], idempotency_key="del-1")
        repeat = await call(c, "delete_task", task_id=first["task_id"], idempotency_key="del-1")
        assert done["task_id"] == repeat["task_id"] and repeat["status"] == "deleted"
    async with mcp_as("bob") as b:
        # Keys are per user: bob's "req-1" is a new request.
        assert (await call(b, "add_task", title="Bob's", idempotency_key="req-1"))["task_id"] == 1
