"""Bulk changes: a preview with a confirmation token first; only the confirmed call changes anything."""

from __future__ import annotations

from datetime import timedelta

from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from tests.agent_tools.conftest import McpFor, call, error_of
from tests.workers.conftest import settle


async def test_a_bulk_delete_without_confirmation_changes_nothing(mcp_for: McpFor, rt: Runtime) -> None:
    async with mcp_for("alice") as c:
        ids = [(await call(c, "add_task", title=f"Old {i}"))["task_id"] for i in range(3)]
        preview = await call(c, "bulk_tasks", action="delete", task_ids=ids)
        assert (preview["confirmed"], preview["count"], preview["confirm_token"][:2]) == (False, 3, "b-")
        assert "nothing changed yet" in preview["note"]
        assert (await call(c, "list_tasks"))["total"] == 3
        done = await call(c, "bulk_tasks", confirm_token=preview["confirm_token"])
        assert (done["confirmed"], done["count"]) == (True, 3)
        assert (await call(c, "list_tasks"))["total"] == 0
        # The token is used up: confirming again does nothing more.
        assert "confirm_token: is not a current" in await error_of(
            c, "bulk_tasks", confirm_token=preview["confirm_token"]
        )
        await call(c, "undo", token=done["undo"])
        assert (await call(c, "list_tasks"))["total"] == 3
    await settle(rt)
    causes = {e.cause for e in await rt.outbox.history("alice") if e.event_type == "deleted"}
    assert causes == {"bulk"}


async def test_bulk_by_filter_completes_only_what_the_preview_showed(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        await call(c, "add_task", title="Mail", tags=["work"], due="2026-11-20")
        await call(c, "add_task", title="Report", tags=["work"], due="2026-11-21T10:00")
        await call(c, "add_task", title="Groceries", tags=["home"], due="2026-11-20")
        preview = await call(c, "bulk_tasks", action="complete", filter="overdue & #work")
        assert sorted(t["title"] for t in preview["tasks"]) == ["Mail", "Report"]
        await call(c, "add_task", title="Late addition", tags=["work"], due="2026-11-19")  # after the preview
        done = await call(c, "bulk_tasks", action="complete", confirm_token=preview["confirm_token"])
        assert sorted(t["title"] for t in done["tasks"]) == ["Mail", "Report"]
        still = await call(c, "list_tasks", status="pending")
        assert sorted(t["title"] for t in still["tasks"]) == ["Groceries", "Late addition"]


async def test_a_confirmation_is_refused_when_a_task_changed_since_the_preview(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        a = (await call(c, "add_task", title="A"))["task_id"]
        b = (await call(c, "add_task", title="B"))["task_id"]
        preview = await call(c, "bulk_tasks", action="delete", task_ids=[a, b, 99])
        assert preview["missing"] == [99]
        await call(c, "update_task", task_id=b, title="B, edited")
        message = await error_of(c, "bulk_tasks", confirm_token=preview["confirm_token"])
        assert "conflict: task(s) 2 changed since the preview; nothing was changed" in message
        assert (await call(c, "list_tasks"))["total"] == 2
        assert "action: this confirm_token was issued for delete" in await error_of(
            c, "bulk_tasks", action="complete", confirm_token=preview["confirm_token"]
        )


async def test_a_confirmation_token_expires(mcp_for: McpFor, clock: ManualClock) -> None:
    async with mcp_for("alice") as c:
        a = (await call(c, "add_task", title="A"))["task_id"]
        preview = await call(c, "bulk_tasks", action="complete", task_ids=[a])
        clock.advance(timedelta(minutes=11))
        assert "confirm_token: expired" in await error_of(c, "bulk_tasks", confirm_token=preview["confirm_token"])


async def test_bulk_reschedule_to_a_date_keeps_each_tasks_time_and_all_day_stays_all_day(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        await call(c, "set_timezone", timezone="Europe/Berlin")
        timed = (await call(c, "add_task", title="Call", due="2026-11-20T15:30"))["task_id"]
        day = (await call(c, "add_task", title="Plants", due="2026-11-20"))["task_id"]
        preview = await call(c, "bulk_tasks", action="reschedule", filter="overdue", due="2026-11-27")
        await call(c, "bulk_tasks", confirm_token=preview["confirm_token"])
        assert (await call(c, "get_task", task_id=timed))["task"]["due"] == "2026-11-27T15:30:00+01:00"
        plants = (await call(c, "get_task", task_id=day))["task"]
        assert (plants["due"], plants["all_day"]) == ("2026-11-27", True)


async def test_bulk_errors_name_the_field_and_the_allowed_values(mcp_for: McpFor) -> None:
    async with mcp_for("alice") as c:
        assert "action: must be one of complete, reopen, delete, reschedule" in await error_of(
            c, "bulk_tasks", task_ids=[1]
        )
        assert "task_ids: give task_ids or filter" in await error_of(c, "bulk_tasks", action="delete")
        assert "due: is required for reschedule" in await error_of(c, "bulk_tasks", action="reschedule", task_ids=[1])
        assert "filter:" in await error_of(c, "bulk_tasks", action="delete", filter="p:urgent")
        nothing = await call(c, "bulk_tasks", action="delete", filter="#nothing")
        assert (nothing["count"], nothing["confirm_token"]) == (0, None)
