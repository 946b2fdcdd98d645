"""The agent tools end to end: the SDK's MCP client over streamable HTTP with a bearer token."""

from __future__ import annotations

from typing import Any

from tests.agent_tools.conftest import call, error_of
from tests.e2e.conftest import McpConnect, mcp_as  # noqa: F401  (fixture)


async def test_recurrence_bulk_and_undo_over_http(mcp_as: McpConnect) -> None:  # noqa: F811
    async with mcp_as("alice") as c:
        weekly: dict[str, Any] = {"frequency": "weekly", "by_day": ["MO", "TH"], "anchor": "schedule_if_on_time"}
        added = await call(c, "add_task", title="Gym", due="2026-12-07T07:00", recurrence=weekly, idempotency_key="k1")
        again = await call(c, "add_task", title="Gym", due="2026-12-07T07:00", recurrence=weekly, idempotency_key="k1")
        assert again["task_id"] == added["task_id"] and again["undo"] == added["undo"]
        assert added["task"]["recurrence"]["rule"] == "FREQ=WEEKLY;BYDAY=MO,TH"
        await call(c, "add_task", title="Stretch", due="2026-12-07T07:30")
        preview = await call(c, "bulk_tasks", action="delete", filter='"gym" | "stretch"')
        assert preview["count"] == 2 and (await call(c, "list_tasks"))["total"] == 2
        done = await call(c, "bulk_tasks", confirm_token=preview["confirm_token"])
        assert (await call(c, "list_tasks"))["total"] == 0
        await call(c, "undo", token=done["undo"])
        listed = await call(c, "list_tasks", sort="due", fields=["title"])
        assert [t["title"] for t in listed["tasks"]] == ["Gym", "Stretch"]
    async with mcp_as("bob") as b:
        assert "token: is not a current undo token" in await error_of(b, "undo", token=added["undo"])
