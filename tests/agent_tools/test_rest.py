"""The same safety features over REST: an Undo-Token on every change, POST /api/undo, bulk with
confirmation, skipping an occurrence."""

from __future__ import annotations

from collections.abc import Callable

import httpx2

from tests.conftest import auth


async def test_rest_changes_carry_an_undo_token_and_bulk_needs_confirmation(
    http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    alice = auth(token_for("alice"))
    added = await http.post(
        "/api/tasks",
        json={"title": "Standup", "due": "2030-01-07T09:00", "recurrence": {"frequency": "daily"}},
        headers=alice,
    )
    assert added.status_code == 201 and added.headers["Undo-Token"].startswith("u-")
    task_id = added.json()["id"]
    skipped = await http.post(f"/api/tasks/{task_id}/skip", headers=alice)
    assert skipped.json()["due"].startswith("2030-01-08T09:00")
    renamed = await http.patch(f"/api/tasks/{task_id}?scope=this", json={"title": "Standup (late)"}, headers=alice)
    undone = await http.post("/api/undo", json={"token": renamed.headers["Undo-Token"]}, headers=alice)
    assert undone.status_code == 200 and undone.json()["tasks"][0]["title"] == "Standup"
    again = await http.post("/api/undo", json={"token": renamed.headers["Undo-Token"]}, headers=alice)
    assert again.status_code == 422 and again.json()["message"].startswith("token:")

    preview = await http.post("/api/tasks/bulk", json={"action": "delete", "task_ids": [task_id]}, headers=alice)
    assert preview.json()["confirmed"] is False
    assert (await http.get("/api/tasks", headers=alice)).json()["total"] == 1
    await http.patch(f"/api/tasks/{task_id}", json={"priority": "high"}, headers=alice)
    stale = await http.post("/api/tasks/bulk", json={"confirm_token": preview.json()["confirm_token"]}, headers=alice)
    assert stale.status_code == 409 and "changed since the preview" in stale.json()["message"]
    assert (await http.get("/api/tasks", headers=alice)).json()["total"] == 1
