"""POST /api/{user_id}/chat: the specification's stateless chat endpoint, sharing threads with ChatKit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from agents.testing import assistant_message, function_call

from doable.bootstrap import Runtime
from tests.chat.conftest import ChatKitClient, ScriptInstaller
from tests.conftest import auth


@pytest.fixture
def post_as(http: httpx2.AsyncClient, token_for: Callable[..., str]) -> Callable[..., Any]:
    async def post(user: str, body: dict[str, Any], *, path_user: str | None = None) -> httpx2.Response:
        return await http.post(f"/api/{path_user or user}/chat", json=body, headers=auth(token_for(user)))

    return post


async def test_a_new_conversation_returns_its_id_reply_and_tool_calls(
    script: ScriptInstaller, post_as: Callable[..., Any], runtime: Runtime
) -> None:
    script(
        [
            [function_call("add_task", {"title": "Buy groceries"}, call_id="c1")],
            [assistant_message("Added 'Buy groceries'.", item_id="m1")],
        ]
    )

    response = await post_as("alice", {"message": "Add a task to buy groceries"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversation_id"].startswith("thr_")
    assert body["response"] == "Added 'Buy groceries'."
    [call] = body["tool_calls"]
    assert call["tool"] == "add_task" and call["arguments"] == {"title": "Buy groceries"}
    assert {k: call["result"][k] for k in ("task_id", "status", "title")} == {
        "task_id": 1,
        "status": "created",
        "title": "Buy groceries",
    }
    assert (await runtime.service.get("alice", 1)).title == "Buy groceries"


async def test_conversations_continue_and_are_the_same_threads_chatkit_shows(
    script: ScriptInstaller, post_as: Callable[..., Any], chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    model = script([[assistant_message("Hi!", item_id="m1")], [assistant_message("Still here.", item_id="m2")]])
    first = (await post_as("alice", {"message": "hello"})).json()

    second = await post_as("alice", {"conversation_id": first["conversation_id"], "message": "are you there?"})

    assert second.status_code == 200
    assert second.json() == {"conversation_id": first["conversation_id"], "response": "Still here.", "tool_calls": []}
    assert "Hi!" in str(model.calls[1].input)
    items = (await chatkit_as("alice").items(first["conversation_id"], order="asc"))["data"]
    assert [i["content"][0]["text"] for i in items] == ["hello", "Hi!", "are you there?", "Still here."]


async def test_the_url_user_must_be_the_token_user(post_as: Callable[..., Any]) -> None:
    response = await post_as("bob", {"message": "hello"}, path_user="alice")

    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"


async def test_a_token_is_required(http: httpx2.AsyncClient) -> None:
    response = await http.post("/api/alice/chat", json={"message": "hello"})

    assert response.status_code == 401


@pytest.mark.parametrize("conversation_id", ["thr_missing", 5])
async def test_unknown_conversations_are_404(post_as: Callable[..., Any], conversation_id: object) -> None:
    response = await post_as("alice", {"conversation_id": conversation_id, "message": "hello"})

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"message": ""}, "message"),
        ({"message": "x" * 4001}, "at most 4000 characters"),
        ({"message": "hi", "user_id": "alice"}, "user_id"),
        ({}, "message"),
    ],
)
async def test_bad_bodies_are_422(post_as: Callable[..., Any], body: dict[str, Any], message: str) -> None:
    response = await post_as("alice", body)

    assert response.status_code == 422
    assert message in response.json()["message"]


async def test_without_a_model_the_answer_says_what_to_set(post_as: Callable[..., Any]) -> None:
    response = await post_as("alice", {"message": "hello"})

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "chat_unavailable" and "OPENAI_API_KEY" in body["message"]
    assert body["conversation_id"].startswith("thr_")
