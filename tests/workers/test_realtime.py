"""The issue's "done when", in real time against `doable serve`: a weekly task with a reminder 2 s
ahead arrives on the SSE stream within 1 s of its time, exactly once; a moved reminder arrives
at its new time; deleted and completed tasks stay silent; completing the weekly task creates the
next occurrence; its history is readable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from doable.platform.auth import mint
from tests.conftest import JWT_SECRET
from tests.servers import serve_doable

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with serve_doable(tmp_path / "data", DOABLE_JWT_SECRET=JWT_SECRET) as server:
        yield server.base


async def listen(client: httpx2.AsyncClient, path: str, into: list[tuple[float, str, Any]]) -> None:
    async with client.stream("GET", path) as response:
        assert response.status_code == 200
        async for event in httpx2.EventSource(response):
            if event.data:  # the opening `retry:` hint carries no data
                into.append((time.time(), event.event, event.json()))


@pytest.fixture
async def alice(served: str) -> AsyncIterator[httpx2.AsyncClient]:
    token = mint(JWT_SECRET, user_id="alice", issuer="doable", audience="doable", ttl_seconds=600)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=served, headers=headers, timeout=httpx2.Timeout(10, read=None)) as client:
        yield client


def iso(instant: datetime) -> str:
    return instant.isoformat(timespec="microseconds")


async def test_reminder_arrives_on_time_once_and_the_weekly_series_continues(alice: httpx2.AsyncClient) -> None:
    notifications: list[tuple[float, str, Any]] = []
    updates: list[tuple[float, str, Any]] = []
    listeners = [
        asyncio.create_task(listen(alice, "/api/notifications/stream", notifications)),
        asyncio.create_task(listen(alice, "/api/updates/stream", updates)),
    ]
    try:
        assert (await alice.put("/api/profile", json={"timezone": "Europe/Berlin"})).status_code == 200
        await asyncio.sleep(0.2)  # the streams are connected
        now = datetime.now(UTC)
        remind_at = now + timedelta(seconds=2)
        weekly = (
            await alice.post(
                "/api/tasks",
                json={
                    "title": "Weekly review",
                    "due": iso(now + timedelta(hours=1)),
                    "reminders": [{"at": iso(remind_at)}],
                    "recurrence": "weekly",
                },
            )
        ).json()
        moved = (
            await alice.post(
                "/api/tasks", json={"title": "Moved", "due": iso(remind_at), "reminders": [{"minutes_before": 0}]}
            )
        ).json()
        moved_to = remind_at + timedelta(seconds=1.5)
        assert (await alice.patch(f"/api/tasks/{moved['id']}", json={"due": iso(moved_to)})).status_code == 200
        for title, settle in (("Deleted", "delete"), ("Completed", "complete")):
            body = {"title": title, "due": iso(remind_at), "reminders": [{"minutes_before": 0}]}
            task = (await alice.post("/api/tasks", json=body)).json()
            if settle == "delete":
                assert (await alice.delete(f"/api/tasks/{task['id']}")).status_code == 200
            else:
                assert (await alice.post(f"/api/tasks/{task['id']}/complete")).status_code == 200

        await asyncio.sleep((moved_to - datetime.now(UTC)).total_seconds() + 1.5)

        arrivals = [(at, data["title"]) for at, kind, data in notifications if kind == "notification"]
        assert [title for _, title in arrivals] == ["Weekly review", "Moved"]
        for (arrived, _), due in zip(arrivals, (remind_at, moved_to), strict=True):
            assert abs(arrived - due.timestamp()) <= 1.0, arrived - due.timestamp()
        inbox = (await alice.get("/api/notifications")).json()
        assert sorted(n["title"] for n in inbox["notifications"]) == ["Moved", "Weekly review"]

        # Complete the weekly task: the next occurrence follows, a week later at the same local time.
        assert (await alice.post(f"/api/tasks/{weekly['id']}/complete")).status_code == 200
        pending: list[dict[str, Any]] = []
        for _ in range(50):
            listed = (await alice.get("/api/tasks", params={"status": "pending", "search": "weekly"})).json()
            pending = listed["tasks"]
            if pending:
                break
            await asyncio.sleep(0.05)
        [nxt] = pending
        assert nxt["due"][11:16] == weekly["due"][11:16]
        assert datetime.fromisoformat(nxt["due"]) - datetime.fromisoformat(weekly["due"]) == timedelta(days=7)
        assert nxt["reminders"][0]["at"] is not None

        # Audit and recurrence consume the same event independently: wait (bounded) for the audit.
        for _ in range(100):
            history = (await alice.get(f"/api/tasks/{weekly['id']}/history")).json()
            if len(history["entries"]) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [e["event"] for e in history["entries"]] == ["completed", "created"]
        # The other open client heard every change.
        assert {"created", "completed", "updated", "deleted"} <= {d["event_type"] for _, k, d in updates if k == "task"}
    finally:
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
