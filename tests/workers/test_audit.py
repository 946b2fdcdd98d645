"""Audit: a complete, append-only, per-user history of task events, over REST and MCP."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
from mcp import Client

from doable.bootstrap import Runtime
from doable.domain.events import EventType
from doable.platform import topology
from doable.usecases.inputs import NewTask, TaskChanges
from mcp_server.identity import fixed_user
from mcp_server.server import build_mcp
from tests.conftest import auth
from tests.workers.conftest import settle


async def story(rt: Runtime) -> int:
    task = await rt.service.add("alice", NewTask(title="Draft report"))
    await rt.service.update("alice", task.task_id, TaskChanges(title="Final report", due="2026-11-30", priority="high"))
    await rt.service.complete("alice", task.task_id)
    await rt.service.reopen("alice", task.task_id)
    await rt.service.delete("alice", task.task_id)
    await settle(rt)
    return task.task_id


async def test_every_change_is_recorded_in_order_and_kept_after_delete(rt: Runtime) -> None:
    task_id = await story(rt)
    assert rt.history is not None
    entries = await rt.history.list("alice", task_id=task_id)
    assert [e.event_type for e in reversed(entries)] == [
        EventType.CREATED,
        EventType.UPDATED,
        EventType.COMPLETED,
        EventType.REOPENED,
        EventType.DELETED,
    ]
    updated = next(e for e in entries if e.event_type is EventType.UPDATED)
    assert set(updated.changed) == {"title", "due_at", "due_date", "priority"}
    assert updated.title == "Final report"


async def test_redelivered_events_are_not_recorded_twice(rt: Runtime) -> None:
    task_id = await story(rt)
    assert rt.delivery is not None and rt.history is not None
    for event in await rt.outbox.history("alice", task_id):
        await rt.delivery.bus.publish(
            topology.TASK_EVENTS, event.model_dump(mode="json"), key="alice", event_id=f"again-{event.event_id}"
        )
    await settle(rt)
    assert len(await rt.history.list("alice", task_id=task_id)) == 5


async def test_history_over_rest_is_per_user(
    rt: Runtime, whttp: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    task_id = await story(rt)
    await rt.service.add("bob", NewTask(title="Bob's own"))
    await settle(rt)
    alice, bob = auth(token_for("alice")), auth(token_for("bob"))

    one = (await whttp.get(f"/api/tasks/{task_id}/history", headers=alice)).json()
    assert [e["event"] for e in one["entries"]] == ["deleted", "reopened", "completed", "updated", "created"]
    recent = (await whttp.get("/api/history", params={"limit": 2}, headers=alice)).json()
    assert [e["event"] for e in recent["entries"]] == ["deleted", "reopened"]
    older = await whttp.get("/api/history", params={"limit": 2, "before": recent["next_before"]}, headers=alice)
    assert [e["event"] for e in older.json()["entries"]] == ["completed", "updated"]

    # Bob's task 1 and Alice's task 1 are different tasks: he sees only his own.
    bobs = (await whttp.get(f"/api/tasks/{task_id}/history", headers=bob)).json()
    assert [(e["event"], e["title"]) for e in bobs["entries"]] == [("created", "Bob's own")]
    assert all(e["title"] == "Bob's own" for e in (await whttp.get("/api/history", headers=bob)).json()["entries"])


async def test_task_history_tool(rt: Runtime) -> None:
    task_id = await story(rt)
    mcp = build_mcp(rt.service, fixed_user("alice"), inbox=rt.inbox, history=rt.history)
    async with Client(mcp) as client:
        result = await client.call_tool("task_history", {"task_id": task_id, "limit": 3})
        assert not result.is_error and result.structured_content is not None
        entries = result.structured_content["entries"]
        assert [e["event"] for e in entries] == ["deleted", "reopened", "completed"]
        recent = await client.call_tool("task_history", {})
        assert recent.structured_content is not None and len(recent.structured_content["entries"]) == 5
