"""A lean tool surface: the whole tool list within its token budget (a real tokenizer), list
results that summarise, field selection, typed recurrence objects, errors a model can act on."""

from __future__ import annotations

import json
from typing import Any

from bpe_openai import get_encoding
from mcp import Client

from doable.bootstrap import Runtime
from tests.agent_tools.conftest import McpFor, call, error_of
from tests.workers.conftest import settle

# What every turn of the chat sends to the model for the tools: names, descriptions and input
# schemas (output schemas stay with the client). Measured with o200k_base (GPT-4o and later).
TOOL_LIST_BUDGET = 3000
# A default page of 50 tasks with 4,000-character descriptions, as the model reads it.
LIST_PAGE_BUDGET = 8_000


def tokens(text: str) -> int:
    return len(get_encoding("o200k_base").encode(text))


async def tool_list(client: Client) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema}
        for t in (await client.list_tools()).tools
    ]


async def test_the_tool_list_stays_within_its_token_budget(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        listed = await tool_list(c)
    names = {t["name"] for t in listed}
    assert {"add_task", "list_tasks", "update_task", "complete_task", "bulk_tasks", "undo", "task_history"} <= names
    total = tokens(json.dumps(listed, separators=(",", ":")))
    assert total <= TOOL_LIST_BUDGET, f"the tool list costs {total} tokens; the budget is {TOOL_LIST_BUDGET}"


async def test_lean_schemas_still_say_which_update_fields_null_clears(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        schemas = {t["name"]: t["input_schema"] for t in await tool_list(c)}
        update = schemas["update_task"]["properties"]
        assert update["due"]["type"] == ["string", "null"] and "null" not in str(update["title"])
        assert "$defs" not in json.dumps(schemas) and '"title": "' not in json.dumps(schemas)
        added = await call(c, "add_task", title="Report", description="draft", due="2026-12-01", recurrence="weekly")
        kept = await call(c, "update_task", task_id=added["task_id"], title="Final report")
        assert (kept["task"]["description"], kept["task"]["due"], kept["task"]["recurrence"]["rule"]) == (
            "draft",
            "2026-12-01",
            "FREQ=WEEKLY",
        )
        cleared = await call(c, "update_task", task_id=added["task_id"], recurrence=None, description=None)
        assert (cleared["task"]["recurrence"], cleared["task"]["description"]) == (None, "")


async def test_list_results_summarise_long_descriptions_within_a_token_budget(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        for i in range(50):
            await call(c, "add_task", title=f"Task {i}", description="lorem ipsum dolor " * 220)
        result = await c.call_tool("list_tasks", {})
        text = result.content[0].text  # type: ignore[union-attr]
        listed = json.loads(text)
        assert listed["returned"] == 50 and "get_task shows one whole" in listed["note"]
        assert all(len(t["description"]) <= 200 for t in listed["tasks"])
        assert tokens(text) <= LIST_PAGE_BUDGET
        whole = await call(c, "get_task", task_id=1)
        assert len(whole["task"]["description"]) > 3000


async def test_list_fields_select_what_comes_back(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        await call(c, "add_task", title="Buy milk", due="2026-12-01T09:00", tags=["home"])
        listed = await call(c, "list_tasks", fields=["title", "due"])
        assert listed["tasks"] == [{"id": 1, "title": "Buy milk", "due": "2026-12-01T09:00:00+00:00"}]
        assert {"total", "returned", "next_cursor", "truncated", "timezone", "now", "today", "week_start"} <= set(
            listed
        )
        message = await error_of(c, "list_tasks", fields=["title", "owner"])
        assert "fields: unknown field(s) owner; allowed: id, title, completed" in message


async def test_the_recurrence_object_with_anchor_and_a_preview_of_its_dates(mcp_for: McpFor, rt: Runtime) -> None:
    async with mcp_for("alice") as c:
        await call(c, "set_timezone", timezone="Europe/Berlin")
        recurrence = {"frequency": "monthly", "by_month_day": [31], "anchor": "schedule"}
        preview = await call(c, "add_task", title="Rent", due="2027-01-31T09:00", recurrence=recurrence, preview=True)
        assert preview["status"] == "preview" and preview["undo"] is None
        assert preview["occurrences"] == [
            "2027-01-31T09:00:00+01:00",
            "2027-02-28T09:00:00+01:00",
            "2027-03-31T09:00:00+02:00",
            "2027-04-30T09:00:00+02:00",
            "2027-05-31T09:00:00+02:00",
        ]
        assert (await call(c, "list_tasks"))["total"] == 0
        added = await call(c, "add_task", title="Rent", due="2027-01-31T09:00", recurrence=recurrence)
        assert added["task"]["recurrence"] == {
            "rule": "FREQ=MONTHLY;BYMONTHDAY=31",
            "summary": "FREQ=MONTHLY;BYMONTHDAY=31",
            "anchor": "schedule",
        }
        moved = await call(
            c, "update_task", task_id=added["task_id"], due="2027-01-30", recurrence="monthly", preview=True
        )
        assert moved["occurrences"][:2] == ["2027-01-30", "2027-02-28"]  # all-day: plain dates
    await settle(rt)


async def test_recurrence_and_scope_errors_name_the_field_and_the_allowed_values(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        message = await error_of(c, "add_task", title="x", due="2026-12-01", recurrence={"frequency": "hourly"})
        assert "frequency" in message and "daily" in message and "weekly" in message
        message = await error_of(c, "add_task", title="x", due="2026-12-01", recurrence={"count": 3})
        assert "recurrence: needs exactly one of 'rule' (preset or RRULE) or 'frequency'" in message
        message = await error_of(
            c, "add_task", title="x", due="2026-12-01", recurrence={"rule": "daily", "anchor": "now"}
        )
        assert "anchor" in message and "schedule_if_on_time" in message
        added = await call(c, "add_task", title="x", due="2026-12-01", recurrence="daily")
        message = await error_of(c, "update_task", task_id=added["task_id"], title="y", scope="some")
        assert "scope" in message and "'this', 'future' or 'all'" in message
        assert "skip: task" in await error_of(
            c, "complete_task", task_id=(await call(c, "add_task", title="z"))["task_id"], skip=True
        )
