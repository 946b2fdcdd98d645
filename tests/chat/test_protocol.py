"""POST /chatkit as the ChatKit JS client uses it, and the clear 4xx answers it promises."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx2
import openai
import pytest
from agents.testing import ModelStep, assistant_message, function_call
from structlog.testing import capture_logs

from agent.server import DoableChatServer
from doable.bootstrap import Runtime
from doable.domain.errors import Unavailable
from tests.chat.conftest import ChatKitClient, ScriptInstaller, text_input


async def test_a_chatkit_js_session(script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]) -> None:
    script([[assistant_message("Hello!", item_id="m1")], [assistant_message("Sure.", item_id="m2")]])
    alice = chatkit_as("alice")

    created = await alice.create("Hi there")
    thread_id = created.thread_id
    assert [e["type"] for e in created.events if e["type"] != "thread.updated"] == [
        "thread.created",
        "thread.item.done",  # the user's message
        "stream_options",
        "thread.item.added",  # the answer: added, content part added, text delta, part done, done
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.done",
    ]
    assert created.of("thread.updated")[0]["thread"]["title"] == "Hi there"
    added = await alice.say(thread_id, "Thanks")
    assert added.replies == ["Sure."] and not added.of("thread.created")

    listed = await alice.threads(limit=10, order="desc")
    assert [(t["id"], t["title"]) for t in listed["data"]] == [(thread_id, "Hi there")]
    assert listed["has_more"] is False

    items = await alice.items(thread_id, limit=3, order="asc")
    assert [i["type"] for i in items["data"]] == ["user_message", "assistant_message", "user_message"]
    assert items["has_more"] is True
    rest = await alice.items(thread_id, limit=3, order="asc", after=items["after"])
    assert [i["content"][0]["text"] for i in rest["data"]] == ["Sure."]

    full = await alice.thread(thread_id)
    assert full["title"] == "Hi there" and len(full["items"]["data"]) == 4
    renamed = await alice.request({"type": "threads.update", "params": {"thread_id": thread_id, "title": "Greetings"}})
    assert renamed["title"] == "Greetings"

    assert await alice.delete(thread_id) == {}
    gone = await alice.post({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})
    assert gone.status_code == 404
    assert (await alice.threads())["data"] == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"type": "threads.explode", "params": {}}', "does not match any of the expected tags"),
        (b'{"type": "threads.add_user_message", "params": {"thread_id": "thr_1"}}', "params.input"),
    ],
)
async def test_malformed_requests_get_400_with_a_reason(
    chatkit_as: Callable[[str], ChatKitClient], body: bytes, expected: str
) -> None:
    response = await chatkit_as("alice").post(body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert expected in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "threads.add_user_message", "params": {"thread_id": "thr_nope", "input": text_input("hi")}},
        {"type": "threads.get_by_id", "params": {"thread_id": "thr_nope"}},
        {"type": "items.list", "params": {"thread_id": "thr_nope"}},
        {"type": "threads.delete", "params": {"thread_id": "thr_nope"}},
        {"type": "threads.retry_after_item", "params": {"thread_id": "thr_nope", "item_id": "msg_1"}},
    ],
)
async def test_unknown_threads_get_404_not_a_stream(chatkit_as: Callable[[str], ChatKitClient], body: dict) -> None:
    response = await chatkit_as("alice").post(body)

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "thread thr_nope not found"}


async def test_unknown_list_cursor_is_404(chatkit_as: Callable[[str], ChatKitClient]) -> None:
    response = await chatkit_as("alice").post({"type": "threads.list", "params": {"after": "thr_nope"}})

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "input.transcribe", "params": {"audio_base64": "AA==", "mime_type": "audio/webm"}}, "dictation"),
        (
            {"type": "attachments.create", "params": {"name": "a.png", "size": 1, "mime_type": "image/png"}},
            "attachments",
        ),
        (
            {"type": "threads.create", "params": {"input": {**text_input("see file"), "attachments": ["atc_1"]}}},
            "attachments",
        ),
    ],
)
async def test_unsupported_requests_get_400(
    chatkit_as: Callable[[str], ChatKitClient], body: dict, message: str
) -> None:
    response = await chatkit_as("alice").post(body)

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported" and message in response.json()["message"]


async def test_messages_must_be_non_empty_and_not_too_long(chatkit_as: Callable[[str], ChatKitClient]) -> None:
    alice = chatkit_as("alice")

    too_long = await alice.post({"type": "threads.create", "params": {"input": text_input("x" * 4001)}})
    empty = await alice.post({"type": "threads.create", "params": {"input": text_input("   ")}})

    assert too_long.status_code == 422 and "at most 4000 characters" in too_long.json()["message"]
    assert empty.status_code == 422 and "must not be empty" in empty.json()["message"]
    assert (await alice.threads())["data"] == []


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic abc"])
async def test_chatkit_needs_a_valid_token(http: httpx2.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = await http.post("/chatkit", json={"type": "threads.list", "params": {}}, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_without_a_model_chat_says_what_to_set(chatkit_as: Callable[[str], ChatKitClient]) -> None:
    turn = await chatkit_as("alice").create("hello")

    [error] = turn.errors
    assert "OPENAI_API_KEY" in error["message"] and "OPENAI_BASE_URL" in error["message"]
    assert error["allow_retry"] is False
    # The message is kept and titled, ready for when a model is configured.
    assert turn.of("thread.updated")[-1]["thread"]["title"] == "hello"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            openai.APIConnectionError(request=httpx2.Request("POST", "https://api.openai.com/v1/responses")),
            "couldn't reach the model provider",
        ),
        (RuntimeError("boom: sk-secret"), "Something went wrong while answering"),
    ],
)
async def test_model_failures_become_a_friendly_error_event(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], error: Exception, message: str
) -> None:
    script([ModelStep.raise_error(error)])

    turn = await chatkit_as("alice").create("hello")

    [event] = turn.errors
    assert message in event["message"]
    assert "sk-secret" not in turn.events.__repr__() and "Traceback" not in event["message"]


async def test_unreachable_tools_become_a_friendly_error_event(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], chat: DoableChatServer
) -> None:
    script([[assistant_message("never", item_id="m1")]])
    chat.link.client_factory = None
    chat.link.url = "http://127.0.0.1:9/mcp"  # nothing listens on the discard port

    turn = await chatkit_as("alice").create("hello")

    [event] = turn.errors
    assert "couldn't reach your task list" in event["message"] and event["allow_retry"] is True


async def test_retrying_replaces_the_answer_after_a_user_message(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    script([[assistant_message("First try.", item_id="m1")], [assistant_message("Second try.", item_id="m2")]])
    alice = chatkit_as("alice")
    created = await alice.create("hello")
    user_item = created.of("thread.item.done")[0]["item"]["id"]

    retried = await alice.stream(
        {"type": "threads.retry_after_item", "params": {"thread_id": created.thread_id, "item_id": user_item}}
    )

    assert retried.replies == ["Second try."]
    items = (await alice.items(created.thread_id, order="asc"))["data"]
    assert [i["content"][0]["text"] for i in items] == ["hello", "Second try."]


async def test_unavailable_storage_becomes_a_friendly_error_event(
    script: ScriptInstaller,
    chatkit_as: Callable[[str], ChatKitClient],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script([[assistant_message("never", item_id="m1")]])

    async def down(user_id: str) -> None:
        raise Unavailable("the database is unavailable; try again shortly")

    monkeypatch.setattr(runtime.service, "get_profile", down)

    turn = await chatkit_as("alice").create("hello")

    [event] = turn.errors
    assert "unavailable right now" in event["message"] and event["allow_retry"] is True


async def test_turns_log_no_message_text_and_no_token(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], caplog: pytest.LogCaptureFixture
) -> None:
    script(
        [
            [function_call("add_task", {"title": "Secret surprise party"}, call_id="c1")],
            [assistant_message("Added.", item_id="m1")],
        ]
    )
    alice = chatkit_as("alice")

    with capture_logs() as logs, caplog.at_level(logging.INFO):
        await alice.create("plan the secret surprise party")

    assert any(entry["event"] == "chat.turn" and entry["tools"] == ["add_task"] for entry in logs)
    everything = repr(logs) + caplog.text
    assert "surprise" not in everything.lower()
    assert alice.token not in everything and "eyJ" not in everything
