"""Isolation as a property: for random sequences of operations by two users over REST, MCP and
chat (a scripted model that tries the other user's ids and user_id), neither ever reads, lists,
searches, changes, completes, deletes, is notified of, streams or sees the history of the other's
tasks; and task ids say nothing about the other user's tasks.

Every task title carries its owner's marker; no answer to one user may contain the other's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from agents import ModelSettings
from agents.testing import ScriptedModel, assistant_message, function_call
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent.mcp_link import in_process
from agent.models import ChatModel
from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.domain.query import Status
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest
from doable.web.app import create_app
from tests.conftest import auth, lifespan_running
from tests.reliability.fuzz import Tried, fuzz
from tests.workers.conftest import open_stream

PAIRS = itertools.count()


@pytest.fixture
async def world(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[Runtime, Any, httpx2.AsyncClient]]:
    """The app on a manual clock, its event delivery driven by hand (`settle`)."""
    runtime = await build(settings, clock=clock)
    delivery, runtime.delivery = runtime.delivery, None
    runtime.detached_delivery = delivery  # type: ignore[attr-defined]
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            app.state.chat.link.client_factory = in_process(app)
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                yield runtime, app, http
    finally:
        await runtime.aclose()
        if delivery is not None:
            await delivery.stop()


@dataclass
class User:
    name: str
    token: str
    marker: str
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> {"title", "completed"}
    titles: itertools.count = field(default_factory=itertools.count)

    def title(self) -> str:
        return f"{self.marker}-{next(self.titles)}"


ACTIONS = {
    "rest": ["create", "list", "search", "get", "update", "complete", "reopen", "delete", "history", "all_history", "notifications"],
    "mcp": ["create", "list", "search", "get", "update", "complete", "reopen", "delete", "history", "notifications", "as_other"],
    "chat": ["complete", "delete", "get", "list", "update"],
}
OPS = st.lists(
    st.tuples(
        st.integers(0, 1),  # who acts
        st.sampled_from(sorted(ACTIONS)).flatmap(lambda t: st.tuples(st.just(t), st.sampled_from(ACTIONS[t]))),
        st.integers(0, 12),  # which id: theirs, own, or one nobody has
    ),
    min_size=4,
    max_size=14,
)


@fuzz(25)
@given(ops=OPS)
async def test_no_operation_by_one_user_reaches_the_others_tasks(
    world: tuple[Runtime, Any, httpx2.AsyncClient],
    clock: ManualClock,
    token_for: Callable[..., str],
    tried: Tried,
    ops: list[tuple[int, tuple[str, str], int]],
) -> None:
    runtime, app, http = world
    pair = next(PAIRS)
    users = [User(f"a{pair}", token_for(f"a{pair}"), f"secretA{pair}x"), User(f"b{pair}", token_for(f"b{pair}"), f"secretB{pair}x")]
    for user in users:  # each starts with a task with a reminder, so notifications have something to be about
        await create(http, user)
    streams = [open_stream(app, "/api/updates/stream", auth(u.token)) for u in users]
    opened = [await s.__aenter__() for s in streams]
    try:
        for who, (transport, action), pick in ops:
            me, other = users[who], users[1 - who]
            candidates = [*sorted(other.tasks), *sorted(me.tasks), 0, -1, 4_000_000]
            target = candidates[pick % len(candidates)]
            seen = await act(runtime, app, http, transport, action, me, other, target)
            tried.count(f"{transport}.{action}")
            assert other.marker not in seen, (transport, action, target, seen[:500])
            await runtime.detached_delivery.settle()  # type: ignore[attr-defined]
        # Reminders of everyone's remaining tasks fire; each user is notified of their own only.
        clock.advance(timedelta(hours=2))
        await runtime.detached_delivery.settle()  # type: ignore[attr-defined]
        for me, other in (users, users[::-1]):
            for path in ("/api/notifications?limit=200", "/api/history?limit=200"):
                body = (await http.get(path, headers=auth(me.token))).text
                assert other.marker not in body, (path, body[:500])
            notified = (await http.get("/api/notifications?limit=200", headers=auth(me.token))).json()
            pending = {t["title"] for t in me.tasks.values() if not t["completed"] and t.get("reminder")}
            assert {n["title"] for n in notified["notifications"]} >= pending
        # Each user's tasks are exactly what their own operations made of them.
        for me in users:
            page, _ = await runtime.service.list(me.name, ListRequest(status=Status.ALL, limit=200))
            assert {t.task_id: (t.title, t.completed) for t in page.tasks} == {
                i: (t["title"], t["completed"]) for i, t in me.tasks.items()
            }, me.name
        # And their live streams carried only their own changes.
        for me, other, stream in zip(users, users[::-1], opened, strict=True):
            events = []
            while True:
                try:
                    events.append(await stream.next(within=0.05))
                except TimeoutError:
                    break
            assert events, "the stream saw nothing at all"
            assert all(other.marker not in json.dumps(e.data) for e in events)
            assert all(e.data["task"]["user_id"] == me.name for e in events if e.event == "task")
    finally:
        for s in streams:
            await s.__aexit__(None, None, None)


async def create(http: httpx2.AsyncClient, user: User) -> int:
    body = {"title": user.title(), "due": "2026-11-26T13:00Z", "reminders": [{"minutes_before": 5}]}
    response = await http.post("/api/tasks", json=body, headers=auth(user.token))
    assert response.status_code == 201, response.text
    task = response.json()
    user.tasks[task["id"]] = {"title": task["title"], "completed": False, "reminder": True}
    return int(task["id"])


async def act(
    runtime: Runtime, app: Any, http: httpx2.AsyncClient, transport: str, action: str, me: User, other: User, target: int
) -> str:
    """Do `action` as `me` over `transport`; keep `me`'s model of their tasks; return all that
    came back (to be searched for the other user's marker)."""
    mine = target in me.tasks
    if transport == "rest":
        return await rest(http, action, me, other, target, mine)
    if transport == "mcp":
        return await mcp(app, action, me, other, target, mine)
    return await chat(app, http, action, me, other, target, mine)


async def rest(http: httpx2.AsyncClient, action: str, me: User, other: User, target: int, mine: bool) -> str:
    h = auth(me.token)
    if action == "create":
        await create(http, me)
        return ""
    if action in ("list", "search"):
        params = {"search": other.marker} if action == "search" else {"limit": 200}
        response = await http.get("/api/tasks", params=params, headers=h)
        if action == "search":
            assert response.json()["total"] == 0
        return response.text
    if action == "all_history":
        return (await http.get("/api/history", headers=h)).text
    if action == "notifications":
        return (await http.get("/api/notifications", headers=h)).text
    path = f"/api/tasks/{target}"
    if action == "get":
        response = await http.get(path, headers=h)
    elif action == "history":
        response = await http.get(f"{path}/history", headers=h)
        if not mine:
            assert response.status_code == 422 if target < 1 else response.json()["entries"] == [], response.text
        return response.text
    elif action == "update":
        title = me.title()
        response = await http.patch(path, json={"title": title}, headers=h)
        if response.status_code == 200:
            me.tasks[target]["title"] = title
    elif action in ("complete", "reopen"):
        response = await http.post(f"{path}/{action}", headers=h)
        if response.status_code == 200:
            me.tasks[target]["completed"] = action == "complete"
    else:
        response = await http.delete(path, headers=h)
        if response.status_code == 200:
            me.tasks.pop(target)
    expect_not_found(response.status_code, response.text, target, mine)
    return response.text


def expect_not_found(status: int, text: str, target: int, mine: bool) -> None:
    """Another user's task answers exactly like one that never existed: nothing to enumerate."""
    if mine:
        assert status == 200, text
    elif target >= 1:
        assert status == 404 and json.loads(text) == {"error": "not_found", "message": f"task {target} not found"}, text
    else:
        assert status == 422, text


async def mcp(app: Any, action: str, me: User, other: User, target: int, mine: bool) -> str:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=auth(me.token)) as http:
        async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
            if action == "create":
                result = await client.call_tool("add_task", {"title": (title := me.title())})
                me.tasks[result.structured_content["task_id"]] = {"title": title, "completed": False}
            elif action == "as_other":
                result = await client.call_tool("list_tasks", {"user_id": other.name})
                assert result.is_error and "permission_denied" in result.content[0].text
            elif action in ("list", "search"):
                result = await client.call_tool("list_tasks", {"search": other.marker} if action == "search" else {})
            elif action == "notifications":
                result = await client.call_tool("list_notifications", {"limit": 200})
            elif action == "history":
                result = await client.call_tool("task_history", {"task_id": target})
                if not mine:
                    assert result.is_error or result.structured_content["entries"] == [], result.content
            else:
                tool = {"get": "get_task", "update": "update_task", "complete": "complete_task", "reopen": "reopen_task", "delete": "delete_task"}[action]
                args: dict[str, Any] = {"task_id": target}
                if action == "update":
                    args["title"] = title = me.title()
                result = await client.call_tool(tool, args)
                if mine:
                    assert not result.is_error, result.content
                    apply(me, action, target, args.get("title"))
                else:
                    assert result.is_error and f"not_found: task {target} not found" in result.content[0].text, result.content
    return json.dumps(result.structured_content) + " ".join(getattr(c, "text", "") for c in result.content)


def apply(me: User, action: str, target: int, title: str | None) -> None:
    if action == "update":
        me.tasks[target]["title"] = title
    elif action in ("complete", "reopen"):
        me.tasks[target]["completed"] = action == "complete"
    elif action == "delete":
        me.tasks.pop(target)


async def chat(app: Any, http: httpx2.AsyncClient, action: str, me: User, other: User, target: int, mine: bool) -> str:
    """A scripted model that calls the tool with the chosen id *and the other user's user_id*."""
    tool = {"get": "get_task", "update": "update_task", "complete": "complete_task", "delete": "delete_task", "list": "list_tasks"}[action]
    args: dict[str, Any] = {"user_id": other.name}
    if action != "list":
        args["task_id"] = target
    if action == "update":
        args["title"] = me.title()
    model = ScriptedModel([[function_call(tool, args, call_id="c1")], [assistant_message("Done.", item_id=f"m-{id(args)}")]])
    app.state.chat.model = ChatModel(model=model, settings=ModelSettings(), name="test", api="scripted", tracing=False)
    body = {"type": "threads.create", "params": {"input": _text(f"{action} task {target}")}, "metadata": {}}
    response = await http.post("/chatkit", content=json.dumps(body), headers={**auth(me.token), "content-type": "application/json"})
    assert response.status_code == 200, response.text
    outputs = [i for i in model.calls[1].input if isinstance(i, dict) and i.get("type") == "function_call_output"]
    seen = response.text + json.dumps(outputs)
    output = str(outputs[0]["output"])
    if action != "list":
        if mine:
            assert "not_found" not in output, output
            apply(me, action, target, args.get("title"))
        else:
            assert "not_found: task" in output or "invalid_argument" in output or "task_id" in output, output
    return seen


def _text(text: str) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "quoted_text": None,
        "inference_options": {"tool_choice": None, "model": None},
    }


async def test_task_ids_count_per_user_and_say_nothing_about_others(
    world: tuple[Runtime, Any, httpx2.AsyncClient], token_for: Callable[..., str]
) -> None:
    _, _, http = world
    alice, bob = auth(token_for("alice")), auth(token_for("bob"))
    for n in range(5):
        await http.post("/api/tasks", json={"title": f"alice {n}"}, headers=alice)
    first = await http.post("/api/tasks", json={"title": "bob's first"}, headers=bob)
    assert first.json()["id"] == 1  # not 6: ids do not reveal how many tasks others have
    existing, never = await http.get("/api/tasks/5", headers=bob), await http.get("/api/tasks/6", headers=bob)
    assert existing.status_code == never.status_code == 404
    assert existing.json() == {"error": "not_found", "message": "task 5 not found"}
    assert never.json() == {"error": "not_found", "message": "task 6 not found"}
    assert existing.headers.keys() == never.headers.keys()
