"""Two promises about changes: every REST change of tasks or the profile answers with an
`Undo-Token` header (and the token undoes exactly it), and no path that creates tasks, undo
included, goes past the per-user task quota."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from doable.bootstrap import Runtime, build
from doable.domain.errors import LimitExceeded
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest, NewTask
from tests.conftest import auth


async def _add(http: httpx2.AsyncClient, headers: dict[str, str], title: str, **extra: Any) -> int:
    added = await http.post("/api/tasks", json={"title": title, **extra}, headers=headers)
    assert added.status_code == 201, added.text
    return int(added.json()["id"])


async def _bulk(http: httpx2.AsyncClient, headers: dict[str, str], **body: Any) -> httpx2.Response:
    preview = await http.post("/api/tasks/bulk", json=body, headers=headers)
    return await http.post("/api/tasks/bulk", json={"confirm_token": preview.json()["confirm_token"]}, headers=headers)


# Each REST route that changes something, as (name, request); every one must carry Undo-Token.
CHANGES: dict[str, Callable[[httpx2.AsyncClient, dict[str, str], int, int], Any]] = {
    "create": lambda http, h, a, b: http.post("/api/tasks", json={"title": "new"}, headers=h),
    "update": lambda http, h, a, b: http.patch(f"/api/tasks/{a}", json={"title": "renamed"}, headers=h),
    "complete": lambda http, h, a, b: http.post(f"/api/tasks/{a}/complete", headers=h),
    "reopen": lambda http, h, a, b: http.post(f"/api/tasks/{b}/reopen", headers=h),
    "delete": lambda http, h, a, b: http.delete(f"/api/tasks/{a}", headers=h),
    "skip": lambda http, h, a, b: http.post(f"/api/tasks/{b}/skip", headers=h),
    "bulk": lambda http, h, a, b: _bulk(http, h, action="complete", task_ids=[a]),
    "profile": lambda http, h, a, b: http.put("/api/profile", json={"timezone": "Europe/Berlin"}, headers=h),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_every_rest_change_answers_with_an_undo_token_that_undoes_it(
    http: httpx2.AsyncClient, token_for: Callable[..., str], change: str
) -> None:
    alice = auth(token_for("alice"))
    a = await _add(http, alice, "plain")
    b = await _add(http, alice, "repeating", due="2030-01-07T09:00", recurrence="daily")
    done = await _add(http, alice, "done")
    await http.post(f"/api/tasks/{done}/complete", headers=alice)
    target_b = done if change == "reopen" else b
    before = (await http.get("/api/tasks", headers=alice)).json()
    profile_before = (await http.get("/api/profile", headers=alice)).json()["timezone"]

    answer = await CHANGES[change](http, alice, a, target_b)
    assert answer.status_code in (200, 201), answer.text
    token = answer.headers.get("Undo-Token")
    assert token and token.startswith("u-"), (change, dict(answer.headers))

    undone = await http.post("/api/undo", json={"token": token}, headers=alice)
    assert undone.status_code == 200, undone.text
    redo = undone.headers.get("Undo-Token")
    assert redo and redo.startswith("u-") and redo == undone.json()["undo"], "an undo is itself undoable"
    after = (await http.get("/api/tasks", headers=alice)).json()
    assert {t["id"]: t["title"] for t in after["tasks"]} == {t["id"]: t["title"] for t in before["tasks"]}
    assert (await http.get("/api/profile", headers=alice)).json()["timezone"] == profile_before


@pytest.fixture
async def tiny(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = await build(settings.model_copy(update={"tasks_per_user": 2}))
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def test_undoing_a_delete_cannot_go_past_the_task_quota(tiny: Runtime) -> None:
    service = tiny.service
    first = await service.add("alice", NewTask(title="one"))
    await service.add("alice", NewTask(title="two"))
    deleted = await service.tasks.delete("alice", first.task_id)
    await service.add("alice", NewTask(title="three"))  # back at the quota
    assert deleted.undo is not None
    with pytest.raises(LimitExceeded, match="limit of 2 tasks"):
        await service.undoer.undo("alice", deleted.undo)
    page, _ = await service.list("alice", ListRequest())
    assert sorted(t.title for t in page.tasks) == ["three", "two"]
    # Under the quota again, the same token works.
    third = next(t for t in page.tasks if t.title == "three")
    await service.delete("alice", third.task_id)
    result = await service.undoer.undo("alice", deleted.undo)
    assert [r.status for r in result.value.tasks] == ["recreated"]


async def test_undoing_a_bulk_delete_counts_every_task_it_would_re_create(
    tiny: Runtime, http_for_tiny: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    alice = auth(token_for("alice"))
    ids = [await _add(http_for_tiny, alice, name) for name in ("one", "two")]
    deleted = await _bulk(http_for_tiny, alice, action="delete", task_ids=ids)
    token = deleted.headers["Undo-Token"]
    await _add(http_for_tiny, alice, "three")  # one slot left, two to re-create
    refused = await http_for_tiny.post("/api/undo", json={"token": token}, headers=alice)
    assert refused.status_code == 422 and "limit of 2 tasks" in refused.json()["message"]
    assert [t["title"] for t in (await http_for_tiny.get("/api/tasks", headers=alice)).json()["tasks"]] == ["three"]


async def test_undoing_a_create_frees_a_slot_and_its_redo_obeys_the_quota(tiny: Runtime) -> None:
    service = tiny.service
    created = await service.tasks.add("alice", NewTask(title="one"))
    assert created.undo is not None
    redo = await service.undoer.undo("alice", created.undo)
    await service.add("alice", NewTask(title="two"))
    await service.add("alice", NewTask(title="three"))
    assert redo.undo is not None
    with pytest.raises(LimitExceeded):
        await service.undoer.undo("alice", redo.undo)


@pytest.fixture
async def http_for_tiny(tiny: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    from doable.web.app import create_app
    from tests.conftest import lifespan_running

    app = create_app(tiny)
    async with lifespan_running(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            yield http
