"""The output schemas clients validate every result against are flat (no `$ref`, no per-field
schema for each item of a list) and accept the results the generated schemas accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jsonschema.validators import validator_for
from mcp.server.mcpserver.tools import Tool
from referencing import Registry

from doable.domain.clock import LocalCalendar
from doable.domain.query import TaskPage
from doable.domain.task import Priority, Reminder, Task
from doable.usecases.views import list_page, task_result
from mcp_server.schemas import flat_output_schema
from mcp_server.server import registered_tools
from mcp_server.tools import TOOLS

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def _task(i: int) -> Task:
    return Task(
        user_id="alice",
        task_id=i,
        title=f"task {i}",
        priority=Priority.HIGH,
        tags=("work",),
        due_at=NOW + timedelta(days=i),
        reminders=(Reminder(minutes_before=30),),
        created_at=NOW,
        updated_at=NOW,
    )


def _generated(name: str) -> dict[str, Any]:
    schema = Tool.from_function(next(s.fn for s in TOOLS if s.name == name)).output_schema
    assert schema is not None
    return schema


def _errors(schema: dict[str, Any], data: object) -> list[str]:
    validator = validator_for(schema)(schema, registry=Registry())
    return [e.message for e in validator.iter_errors(data)]


def test_every_tool_publishes_a_flat_output_schema() -> None:
    tools = registered_tools()
    assert [t.name for t in tools] == [s.name for s in TOOLS]
    for tool in tools:
        assert tool.output_schema is not None, tool.name
        assert "$ref" not in json.dumps(tool.output_schema), tool.name


def test_a_page_of_tasks_validates_against_both_schemas_and_list_items_are_not_described_field_by_field() -> None:
    data = list_page(
        TaskPage(tasks=[_task(i) for i in range(1, 51)], total=50, next_cursor=None), LocalCalendar(now=NOW, tz=BERLIN)
    )
    generated = _generated("list_tasks")
    flat = flat_output_schema(generated)
    assert _errors(generated, data) == [] and _errors(flat, data) == []
    items = flat["properties"]["tasks"]["items"]
    assert items["type"] == "object" and items["required"] == ["id"]
    assert set(items["properties"]) == set(generated["$defs"]["TaskItem"]["properties"])
    assert all(v is True for v in items["properties"].values())


@pytest.mark.parametrize(
    "broken",
    [
        {"total": "many"},
        {"next_cursor": 3},
        {"tasks": [{"title": "no id"}]},
        {"tasks": "not a list"},
    ],
)
def test_the_flat_schema_refuses_what_the_generated_one_refuses(broken: dict[str, Any]) -> None:
    page = list_page(TaskPage(tasks=[_task(1)], total=1, next_cursor=None), LocalCalendar(now=NOW, tz=BERLIN))
    data = {**page, **broken}
    assert _errors(_generated("list_tasks"), data) and _errors(flat_output_schema(_generated("list_tasks")), data)


def test_a_single_task_result_keeps_its_field_types_and_nullable_fields_as_type_lists() -> None:
    flat = flat_output_schema(_generated("get_task"))
    data = task_result(_task(1), "found", BERLIN).model_dump(mode="json")
    assert _errors(flat, data) == []
    assert _errors(flat, {**data, "task": {**data["task"], "title": 7}})
    assert flat["properties"]["undo"]["type"] == ["string", "null"]
    assert "anyOf" not in json.dumps(flat["properties"]["task"])
