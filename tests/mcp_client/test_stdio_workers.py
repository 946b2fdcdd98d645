"""Claude Desktop may be the only thing running: `doable mcp` (stdio) then runs the reminder,
recurrence and notification workers itself, so a reminder fires with no `doable serve` anywhere."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.mcp_client.conftest import Connect, call
from tests.servers import serve_doable


async def test_a_reminder_fires_with_only_the_stdio_server_running(over_stdio: Connect) -> None:
    async with over_stdio() as client:
        now = datetime.now(UTC)
        remind_at = (now + timedelta(seconds=2)).replace(microsecond=0)
        added = await call(
            client,
            "add_task",
            title="Call the dentist",
            due=(now + timedelta(hours=1)).isoformat(),
            reminders=[{"at": remind_at.isoformat()}],
            recurrence="daily",
        )
        deadline = time.monotonic() + 20
        while not (inbox := await call(client, "list_notifications"))["notifications"]:
            assert time.monotonic() < deadline, "no reminder arrived within 20 s"
            await asyncio.sleep(0.25)
        [reminder] = inbox["notifications"]
        assert (reminder["type"], reminder["task_id"], reminder["title"]) == (
            "reminder",
            added["task_id"],
            "Call the dentist",
        )
        assert datetime.fromisoformat(reminder["remind_at"]) == remind_at
        # The recurrence worker runs too: completing a daily task brings its next occurrence.
        await call(client, "complete_task", task_id=added["task_id"])
        while (await call(client, "list_tasks", status="pending"))["total"] == 0:
            assert time.monotonic() < deadline, "the next occurrence did not appear"
            await asyncio.sleep(0.25)


@pytest.mark.slow
async def test_with_doable_serve_on_the_same_data_each_reminder_and_occurrence_comes_once(
    over_stdio: Connect, tmp_path: Path
) -> None:
    # Claude Desktop's `doable mcp` and `doable serve` on one data folder: both run the workers.
    with serve_doable(tmp_path / "data"):
        async with over_stdio() as client:
            now = datetime.now(UTC)
            for title in ("Stretch", "Drink water"):
                await call(
                    client,
                    "add_task",
                    title=title,
                    due=(now + timedelta(hours=1)).isoformat(),
                    reminders=[{"at": (now + timedelta(seconds=2)).isoformat()}],
                    recurrence="daily",
                )
            deadline = time.monotonic() + 20
            while (await call(client, "list_notifications"))["unread"] < 2:
                assert time.monotonic() < deadline, "the reminders did not arrive"
                await asyncio.sleep(0.25)
            for task_id in (1, 2):
                await call(client, "complete_task", task_id=task_id)
            while (await call(client, "list_tasks", status="pending"))["total"] < 2:
                assert time.monotonic() < deadline, "the next occurrences did not appear"
                await asyncio.sleep(0.25)
            await asyncio.sleep(2)  # time for a second process to do any of it twice
            assert (await call(client, "list_notifications"))["unread"] == 2
            assert (await call(client, "list_tasks", status="pending"))["total"] == 2
