"""One user's chat can never read, list, extend or act on another's threads or tasks."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import jwt
import pytest
from agents.testing import assistant_message, function_call

from agent.mcp_link import in_process
from agent.server import DoableChatServer
from doable.bootstrap import Runtime
from doable.platform.auth import service_tokens
from doable.usecases.inputs import ListRequest, NewTask
from tests.chat.conftest import ChatKitClient, ScriptInstaller, text_input
from tests.chat.test_conversations import tool_output
from tests.conftest import auth


@pytest.fixture
async def alices_thread(script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]) -> str:
    script([[assistant_message("Noted, Alice.", item_id="m1")]])
    return (await chatkit_as("alice").create("my secret plans")).thread_id


@pytest.mark.parametrize(
    "request_of",
    [
        lambda t: {"type": "threads.get_by_id", "params": {"thread_id": t}},
        lambda t: {"type": "items.list", "params": {"thread_id": t}},
        lambda t: {"type": "threads.add_user_message", "params": {"thread_id": t, "input": text_input("hi")}},
        lambda t: {"type": "threads.update", "params": {"thread_id": t, "title": "mine now"}},
        lambda t: {"type": "threads.delete", "params": {"thread_id": t}},
        lambda t: {"type": "items.feedback", "params": {"thread_id": t, "item_ids": [], "kind": "positive"}},
        lambda t: {"type": "threads.list", "params": {"after": t}},
    ],
)
async def test_bob_cannot_touch_alices_thread(
    alices_thread: str, chatkit_as: Callable[[str], ChatKitClient], request_of: Callable[[str], dict]
) -> None:
    response = await chatkit_as("bob").post(request_of(alices_thread))

    assert response.status_code == 404
    assert "my secret plans" not in response.text
    thread = await chatkit_as("alice").thread(alices_thread)
    assert thread["title"] == "my secret plans" and len(thread["items"]["data"]) == 2


async def test_bob_lists_only_his_threads(
    alices_thread: str, script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    script([[assistant_message("Hi Bob.", item_id="m2")]])
    bobs = (await chatkit_as("bob").create("bob here")).thread_id

    assert [t["id"] for t in (await chatkit_as("bob").threads())["data"]] == [bobs]
    assert [t["id"] for t in (await chatkit_as("alice").threads())["data"]] == [alices_thread]


async def test_bob_cannot_continue_alices_thread_through_the_spec_endpoint(
    alices_thread: str, http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    response = await http.post(
        "/api/bob/chat", json={"conversation_id": alices_thread, "message": "hi"}, headers=auth(token_for("bob"))
    )

    assert response.status_code == 404


async def test_a_model_naming_alice_still_acts_only_for_bob(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    """Even a model scripted (or prompt-injected) to pass Alice's id reaches only Bob's tasks."""
    await runtime.service.add("alice", NewTask(title="Alice's task"))
    model = script(
        [
            [
                function_call("complete_task", {"task_id": 1, "user_id": "alice"}, call_id="c1"),
                function_call("delete_task", {"task_id": 1, "user_id": "alice"}, call_id="c2"),
                function_call("add_task", {"title": "Planted", "user_id": "alice"}, call_id="c3"),
                function_call("list_tasks", {"user_id": "alice"}, call_id="c4"),
            ],
            [assistant_message("Done.", item_id="m1")],
        ]
    )

    await chatkit_as("bob").create("complete and delete alice's task 1")

    alice_page, _ = await runtime.service.list("alice", ListRequest())
    assert [(t.title, t.completed) for t in alice_page.tasks] == [("Alice's task", False)]
    bob_page, _ = await runtime.service.list("bob", ListRequest())
    assert [t.title for t in bob_page.tasks] == ["Planted"]
    outputs = [
        i["output"] for i in model.calls[1].input if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    assert sum("not_found: task 1 not found" in str(o) for o in outputs) == 2
    assert [t["title"] for t in tool_output(model.calls[1])["tasks"]] == ["Planted"]


async def test_mcp_tokens_are_minted_per_user_and_refused_by_rest(
    app: object, runtime: Runtime, http: httpx2.AsyncClient
) -> None:
    """The agent's token works on /mcp only: its audience is the MCP server, not the REST API."""
    mcp_token = service_tokens(runtime.settings, runtime.signing_secret).mint("alice")

    rest = await http.get("/api/tasks", headers=auth(mcp_token))
    chatkit = await http.post("/chatkit", json={"type": "threads.list", "params": {}}, headers=auth(mcp_token))
    async with in_process(app)(headers=auth(mcp_token)) as client:
        mcp = await client.post(
            "http://127.0.0.1:8000/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"},
        )

    assert rest.status_code == 401 and chatkit.status_code == 401
    assert mcp.status_code == 200, mcp.text


async def test_each_turn_connects_with_a_token_for_its_own_user(chat: DoableChatServer) -> None:
    alice, bob = chat.link.for_user("alice"), chat.link.for_user("bob")

    def claims(server: object) -> dict:
        token = server.params["headers"]["Authorization"].removeprefix("Bearer ")  # type: ignore[attr-defined]
        return jwt.decode(token, options={"verify_signature": False})

    assert (claims(alice)["sub"], claims(bob)["sub"]) == ("alice", "bob")
    assert claims(alice)["aud"] == "doable-mcp" and claims(alice)["exp"] - claims(alice)["iat"] == 300
