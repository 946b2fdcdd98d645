"""Limits, each with a clear error: request body size, list page size, tags per task, reminders
per task, tasks per user and chat message length (the last three configurable)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from doable.bootstrap import Runtime, build
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.chat.conftest import text_input
from tests.conftest import auth, lifespan_running


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"tasks_per_user": 3, "reminders_per_task": 2, "chat_message_max_chars": 50, "max_body_bytes": 64_000}
    )


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient, Any]]:
    runtime = await build(settings)
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                yield runtime, http, app
    finally:
        await runtime.aclose()


async def _tool(app: Any, token: str, name: str, args: dict[str, Any]) -> tuple[bool, str]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=auth(token)) as http:
        async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
            result = await client.call_tool(name, args)
    return result.is_error, " ".join(getattr(c, "text", "") for c in result.content)


async def test_a_body_over_the_limit_is_refused_with_413_on_every_endpoint(
    limited: tuple[Runtime, httpx2.AsyncClient, Any], token_for: Callable[..., str]
) -> None:
    _, http, _ = limited
    big = json.dumps({"title": "x", "description": "y" * 70_000}).encode()
    headers = {**auth(token_for("alice")), "content-type": "application/json"}
    for path in ("/api/tasks", "/api/tasks/1", "/mcp", "/chatkit", "/api/alice/chat", "/api/profile"):
        method = "PATCH" if path == "/api/tasks/1" else "PUT" if path == "/api/profile" else "POST"
        response = await http.request(method, path, content=big, headers=headers)
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        assert response.json() == {
            "error": "payload_too_large",
            "message": "request body must be at most 64000 bytes",
        }
    # Without a Content-Length (chunked), the limit holds while the body streams in.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 1000

    response = await http.post("/api/tasks", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert (await http.get("/api/tasks", headers=auth(token_for("alice")))).json()["total"] == 0


async def test_list_page_size_is_at_most_200(
    limited: tuple[Runtime, httpx2.AsyncClient, Any], token_for: Callable[..., str]
) -> None:
    _, http, app = limited
    response = await http.get("/api/tasks", params={"limit": 201}, headers=auth(token_for("alice")))
    assert response.status_code == 422
    assert response.json()["fields"] == [{"field": "limit", "rule": "Input should be less than or equal to 200"}]
    failed, text = await _tool(app, token_for("alice"), "list_tasks", {"limit": 201})
    assert failed and "limit" in text and "200" in text
    for path in ("/api/notifications", "/api/history"):
        response = await http.get(path, params={"limit": 201}, headers=auth(token_for("alice")))
        assert response.status_code == 422 and "limit" in response.json()["message"]


async def test_a_task_takes_at_most_20_tags(
    limited: tuple[Runtime, httpx2.AsyncClient, Any], token_for: Callable[..., str]
) -> None:
    _, http, app = limited
    tags = [f"t{n}" for n in range(21)]
    response = await http.post("/api/tasks", json={"title": "x", "tags": tags}, headers=auth(token_for("alice")))
    assert response.status_code == 422
    assert response.json()["message"] == "tags: at most 20 tags per task (got 21)"
    failed, text = await _tool(app, token_for("alice"), "add_task", {"title": "x", "tags": tags})
    assert failed and "at most 20 tags per task" in text
    ok = await http.post("/api/tasks", json={"title": "x", "tags": tags[:20]}, headers=auth(token_for("alice")))
    assert ok.status_code == 201


async def test_reminders_per_task_follow_the_setting(
    limited: tuple[Runtime, httpx2.AsyncClient, Any], token_for: Callable[..., str]
) -> None:
    _, http, app = limited
    three = [{"minutes_before": m} for m in (5, 10, 15)]
    body = {"title": "x", "due": "2026-12-01T09:00", "reminders": three}
    response = await http.post("/api/tasks", json=body, headers=auth(token_for("alice")))
    assert response.status_code == 422
    assert response.json()["message"] == "reminders: at most 2 reminders per task"
    failed, text = await _tool(app, token_for("alice"), "add_task", body)
    assert failed and "at most 2 reminders per task" in text
    created = await http.post("/api/tasks", json={**body, "reminders": three[:2]}, headers=auth(token_for("alice")))
    assert created.status_code == 201
    patched = await http.patch("/api/tasks/1", json={"reminders": three}, headers=auth(token_for("alice")))
    assert patched.status_code == 422 and "at most 2 reminders" in patched.json()["message"]


async def test_tasks_per_user_follow_the_setting_and_free_up_on_delete(
    limited: tuple[Runtime, httpx2.AsyncClient, Any], token_for: Callable[..., str]
) -> None:
    runtime, http, app = limited
    alice = auth(token_for("alice"))
    for n in range(3):
        assert (await http.post("/api/tasks", json={"title": f"t{n}"}, headers=alice)).status_code == 201
    full = await http.post("/api/tasks", json={"title": "one more"}, headers=alice)
    assert full.status_code == 422
    assert full.json() == {
        "error": "invalid_argument",
        "message": "tasks: limit of 3 tasks per user reached",
        "field": "tasks",
    }
    failed, text = await _tool(app, token_for("alice"), "add_task", {"title": "one more"})
    assert failed and "limit of 3 tasks per user reached" in text
    # Per user: bob is not affected; and deleting frees a place.
    assert (await http.post("/api/tasks", json={"title": "bob's"}, headers=auth(token_for("bob")))).status_code == 201
    assert (await http.delete("/api/tasks/1", headers=alice)).status_code == 200
    assert (await http.post("/api/tasks", json={"title": "fits again"}, headers=alice)).status_code == 201
    assert len(await runtime.outbox.history("alice")) == 5  # 4 creates and a delete; the refusals recorded nothing


async def test_chat_messages_longer_than_the_setting_are_refused(
    limited: tuple[Runtime, httpx2.AsyncClient, Any], token_for: Callable[..., str]
) -> None:
    _, http, _ = limited
    alice = {**auth(token_for("alice")), "content-type": "application/json"}
    long = "x" * 51
    body = {"type": "threads.create", "params": {"input": text_input(long)}, "metadata": {}}
    response = await http.post("/chatkit", content=json.dumps(body), headers=alice)
    assert response.status_code == 422
    assert response.json() == {"error": "invalid_argument", "message": "message: must be at most 50 characters (got 51)"}
    response = await http.post("/api/alice/chat", json={"message": long}, headers=alice)
    assert response.status_code == 422
    assert response.json()["message"] == "message: must be at most 50 characters (got 51)"
    threads = await http.post("/chatkit", content=json.dumps({"type": "threads.list", "params": {}}), headers=alice)
    assert threads.json()["data"] == []
