"""Every MCP tool under random and adversarial arguments, over streamable HTTP as a client sends
them: a tool error that names the problem, storage exactly as it was, never an internal error,
a traceback or a hang.

The tools are read from the server (`tools/list`), so a tool added later is fuzzed too; its
parameters get the adversarial values of their name, or any JSON value for an unknown name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doable.bootstrap import Runtime
from doable.usecases.inputs import NewTask
from tests.reliability.fuzz import (
    NASTY_TIMEZONES,
    Tried,
    due_values,
    edge_filters,
    forged_cursors,
    fuzz,
    ints,
    json_values,
    reminder_values,
    rule_values,
    snapshot,
    tag_values,
    texts,
)

HANG_SECONDS = 10.0
# Some inputs are 70 kB strings; hypothesis warns when it prints such an input (a failure report).
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

QUERY_WORDS = st.sampled_from(
    ["all", "pending", "completed", "overdue", "today", "due", "priority", "asc", "desc", "any", "#work", "p:high"]
)
PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "title": st.one_of(st.just("Buy milk"), texts(), json_values()),
    "description": st.one_of(texts(), json_values()),
    "priority": st.one_of(st.sampled_from(["none", "low", "high", "urgent", ""]), st.lists(QUERY_WORDS, max_size=3), json_values()),
    "tags": tag_values(),
    "due": st.one_of(due_values(), QUERY_WORDS),
    "due_after": due_values(),
    "due_before": due_values(),
    "reminders": reminder_values(),
    "recurrence": rule_values(),
    "task_id": st.one_of(st.integers(1, 4), ints(), json_values()),
    "task_ids": st.one_of(st.lists(st.one_of(st.integers(1, 4), ints()), max_size=5), json_values()),
    "ids": st.one_of(st.just("all"), st.lists(ints(), max_size=5), json_values()),
    "timezone": st.one_of(st.sampled_from(NASTY_TIMEZONES), texts(), json_values()),
    "limit": st.one_of(ints(), json_values()),
    "cursor": st.one_of(texts(), st.just("eyJub3QiOiJhIGN1cnNvciJ9"), forged_cursors(), json_values()),
    "search": st.one_of(texts(), json_values()),
    "filter": st.one_of(
        st.sampled_from(["overdue & (#work | #home)", "((((", "due before: friday", "!" * 600]), edge_filters(), texts()
    ),
    "status": st.one_of(QUERY_WORDS, json_values()),
    "sort": st.one_of(QUERY_WORDS, json_values()),
    "order": st.one_of(QUERY_WORDS, json_values()),
    "tags_mode": st.one_of(QUERY_WORDS, json_values()),
    "unread_only": json_values(),
    "idempotency_key": st.one_of(st.none(), st.sampled_from(["k1", "", " ", "x" * 129]), texts()),
    "user_id": st.one_of(st.sampled_from(["alice", "bob", "", "alice ", "ALICE"]), json_values()),
}
EXTRA_KEYS = st.sampled_from(["owner", "id", "__proto__", "completed", "x" * 64])


@pytest.fixture
async def seeded(quiet_runtime: Runtime) -> Runtime:
    service = quiet_runtime.service
    await service.add("alice", NewTask(title="plain"))
    await service.add(
        "alice",
        NewTask(title="weekly", due="2026-12-04T16:00", reminders=[{"minutes_before": 30}], recurrence="weekly"),  # type: ignore[list-item]
    )
    await service.add("alice", NewTask(title="tagged", tags=["work"], due="2026-12-01"))
    return quiet_runtime


@pytest.fixture
async def tools(connect: Callable[[], Any]) -> dict[str, Any]:
    async with connect() as client:
        return {t.name: t for t in (await client.list_tools()).tools}


def sendable(value: Any) -> Any:
    """The value as a JSON client can send it: the SDK's encoder cannot write a lone surrogate
    (the REST suite sends those, escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, list):
        return [sendable(v) for v in value]
    if isinstance(value, dict):
        return {sendable(k): sendable(v) for k, v in value.items()}
    return value


@fuzz(250)
@given(data=st.data())
async def test_every_tool_refuses_bad_arguments_cleanly(
    connect: Callable[[], Any], tools: dict[str, Any], seeded: Runtime, tried: Tried, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(tools)), label="tool")
    properties: dict[str, Any] = tools[name].input_schema.get("properties", {})
    chosen = data.draw(st.lists(st.sampled_from(sorted(properties)), unique=True) if properties else st.just([]), label="params")
    args = {p: data.draw(PARAMS.get(p, json_values()), label=p) for p in chosen}
    if data.draw(st.booleans(), label="extra"):
        args[data.draw(EXTRA_KEYS, label="extra key")] = data.draw(json_values(), label="extra value")
    args = sendable(args)

    assert seeded.sql_engine is not None
    before = await snapshot(seeded.sql_engine)
    async with connect() as client:
        result = await asyncio.wait_for(client.call_tool(name, args), HANG_SECONDS)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert "Traceback" not in text
    assert not text.startswith("internal"), (name, args, text)
    if result.is_error:
        tried.count("tool error")
        assert text.strip(), (name, args)
        assert await snapshot(seeded.sql_engine) == before, (name, args, text)
    else:
        tried.count("ok")
        assert result.structured_content is not None, (name, args, text)
