"""Every change carries an undo token; `undo` reverses it within its window, refuses when the
task changed since, and is recorded in the history as done by the agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from tests.agent_tools.conftest import McpFor, call, error_of, pending
from tests.workers.conftest import settle, tasks_of


async def test_undo_restores_an_update(mcp_for: McpFor, rt: Runtime) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Report", description="draft", tags=["work"])
        assert added["undo"].startswith("u-")
        changed = await call(c, "update_task", task_id=added["task_id"], title="Final report", description=None)
        undone = await call(c, "undo", token=changed["undo"])
        assert undone["undone"] == "update"
        assert undone["tasks"] == [{"task_id": added["task_id"], "status": "restored", "title": "Report"}]
        task = (await call(c, "get_task", task_id=added["task_id"]))["task"]
        assert (task["title"], task["description"], task["tags"]) == ("Report", "draft", ["work"])


async def test_undo_of_add_deletes_and_undo_of_delete_brings_the_same_task_back(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Call mom", priority="high")
        deleted = await call(c, "delete_task", task_id=added["task_id"])
        back = await call(c, "undo", token=deleted["undo"])
        assert back["tasks"][0]["status"] == "recreated"
        again = await call(c, "get_task", task_id=added["task_id"])
        assert (again["title"], again["task"]["priority"]) == ("Call mom", "high")
        # The add's own token is stale now (the task was deleted and re-created since).
        assert "conflict: task 1 changed since" in await error_of(c, "undo", token=added["undo"])
        other = await call(c, "add_task", title="Typo")
        gone = await call(c, "undo", token=other["undo"])
        assert gone["tasks"][0]["status"] == "deleted"
        assert [t["title"] for t in (await call(c, "list_tasks"))["tasks"]] == ["Call mom"]


async def test_undoing_a_completion_restores_the_task_and_removes_the_spawned_occurrence(
    mcp_for: McpFor, rt: Runtime, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 11, 23, 8, tzinfo=UTC))
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Standup", due="2026-11-23T09:00", recurrence="daily")
        clock.set(datetime(2026, 11, 26, 12, tzinfo=UTC))  # three days late: three missed
        done = await call(c, "complete_task", task_id=added["task_id"])
        await settle(rt)
        assert len(await pending(rt)) == 1 and (await pending(rt))[0].task_id != added["task_id"]
        history = await call(c, "task_history", task_id=added["task_id"])
        assert [o["status"] for o in history["occurrences"]] == ["missed"] * 3 + ["completed"]
        await call(c, "undo", token=done["undo"])
        await settle(rt)
        [task] = await pending(rt)
        assert task.task_id == added["task_id"] and task.due_at == datetime(2026, 11, 23, 9, tzinfo=UTC)
        assert (await call(c, "task_history", task_id=added["task_id"]))["occurrences"] == []
        # Completing it again continues the series as usual, once.
        await call(c, "complete_task", task_id=added["task_id"])
        await settle(rt)
        assert [t.due_at for t in await pending(rt)] == [datetime(2026, 11, 27, 9, tzinfo=UTC)]


async def test_undoing_a_completion_before_the_worker_ran_spawns_nothing(mcp_for: McpFor, rt: Runtime) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Standup", due="2026-11-27T09:00", recurrence="daily")
        done = await call(c, "complete_task", task_id=added["task_id"])
        await call(c, "undo", token=done["undo"])  # the recurrence worker has not run yet
        await settle(rt)
        assert [t.task_id for t in await tasks_of(rt, "alice")] == [added["task_id"]]
        assert not (await pending(rt))[0].completed


async def test_undo_is_refused_once_the_task_changed_and_changes_nothing(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="v1")
        first = await call(c, "update_task", task_id=added["task_id"], title="v2")
        await call(c, "update_task", task_id=added["task_id"], title="v3")
        message = await error_of(c, "undo", token=first["undo"])
        assert "conflict: task 1 changed since; nothing was undone" in message
        assert (await call(c, "get_task", task_id=added["task_id"]))["title"] == "v3"


async def test_an_undo_token_works_once_for_its_user_within_its_window(mcp_for: McpFor, clock: ManualClock) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Once")
        late = await call(c, "add_task", title="Late")
    async with mcp_for("bob") as b:
        assert "token: is not a current undo token" in await error_of(b, "undo", token=added["undo"])
    async with mcp_for("alice") as c:
        await call(c, "undo", token=added["undo"])
        assert "token: is not a current undo token" in await error_of(c, "undo", token=added["undo"])
        assert "token: must be an undo token" in await error_of(c, "undo", token="nope")
        clock.advance(timedelta(hours=25))
        assert "token: expired; a change can be undone for 24 hours" in await error_of(c, "undo", token=late["undo"])


async def test_undo_is_recorded_in_the_history_as_done_by_the_agent(mcp_for: McpFor, rt: Runtime) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Pay rent")
        done = await call(c, "complete_task", task_id=added["task_id"])
        await call(c, "undo", token=done["undo"])
        await settle(rt)
        entries = (await call(c, "task_history", task_id=added["task_id"]))["entries"]
    assert [(e["event"], e["by"], e["cause"]) for e in entries] == [
        ("reopened", "agent", "undo"),
        ("completed", "agent", None),
        ("created", "agent", None),
    ]


async def test_an_undo_can_itself_be_undone(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Draft")
        changed = await call(c, "update_task", task_id=added["task_id"], title="Final")
        undone = await call(c, "undo", token=changed["undo"])
        await call(c, "undo", token=undone["undo"])
        assert (await call(c, "get_task", task_id=added["task_id"]))["title"] == "Final"


async def test_timezone_changes_and_skips_can_be_undone(mcp_for: McpFor, rt: Runtime) -> None:
    async with mcp_for("alice") as c:
        changed = await call(c, "set_timezone", timezone="Europe/Berlin")
        assert (await call(c, "undo", token=changed["undo"]))["timezone"] == "UTC"
        assert (await call(c, "get_profile"))["timezone"] == "UTC"
        added = await call(c, "add_task", title="Gym", due="2026-11-27T07:00", recurrence="weekly")
        skipped = await call(c, "complete_task", task_id=added["task_id"], skip=True)
        assert skipped["status"] == "skipped" and skipped["task"]["due"] == "2026-12-04T07:00:00+00:00"
        await call(c, "undo", token=skipped["undo"])
        task = (await call(c, "get_task", task_id=added["task_id"]))["task"]
        assert task["due"] == "2026-11-27T07:00:00+00:00"
        assert (await call(c, "task_history", task_id=added["task_id"]))["occurrences"] == []


async def test_a_retried_undo_with_the_same_idempotency_key_returns_the_first_result(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        added = await call(c, "add_task", title="Once")
        first = await call(c, "undo", token=added["undo"], idempotency_key="undo-1")
        again = await call(c, "undo", token=added["undo"], idempotency_key="undo-1")
        assert first == again
