"""The real OpenAI client path, with the provider mocked at the HTTP boundary (pytest-httpx2):
the Responses API for OpenAI, and Chat Completions for an OpenAI-compatible server (Ollama)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
import respx
from pydantic import SecretStr

from agent.models import select_model
from agent.server import DoableChatServer
from doable.bootstrap import Runtime
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest
from tests.chat.conftest import ChatKitClient

RESPONSES_URL = "https://api.openai.com/v1/responses"
OLLAMA_URL = "http://ollama.test:11434/v1"


def sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> httpx.Response:
    lines = []
    for kind, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        lines.append((f"event: {kind}\n" if kind else "") + f"data: {payload}\n\n")
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(lines).encode())


# ---- the Responses API ---------------------------------------------------------------------


def _response(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1764158400,
        "model": "gpt-5.6-luna",
        "status": status,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def responses_stream(*bodies: tuple[str, dict[str, Any]]) -> httpx.Response:
    seq = itertools.count()
    return sse([(kind, {"type": kind, "sequence_number": next(seq), **body}) for kind, body in bodies])


def responses_function_call(name: str, arguments: dict[str, Any]) -> httpx.Response:
    args = json.dumps(arguments)
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": name,
        "arguments": "",
        "status": "in_progress",
    }
    done = {**item, "arguments": args, "status": "completed"}
    return responses_stream(
        ("response.created", {"response": _response("in_progress", [])}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.function_call_arguments.delta", {"output_index": 0, "item_id": "fc_1", "delta": args}),
        (
            "response.function_call_arguments.done",
            {"output_index": 0, "item_id": "fc_1", "arguments": args, "name": name},
        ),
        ("response.output_item.done", {"output_index": 0, "item": done}),
        ("response.completed", {"response": _response("completed", [done])}),
    )


def responses_text(text: str) -> httpx.Response:
    ids = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []}
    done = {**message, "status": "completed", "content": [{**part, "text": text}]}
    return responses_stream(
        ("response.created", {"response": _response("in_progress", [])}),
        ("response.output_item.added", {"output_index": 0, "item": message}),
        ("response.content_part.added", {**ids, "part": part}),
        ("response.output_text.delta", {**ids, "delta": text, "logprobs": []}),
        ("response.output_text.done", {**ids, "text": text, "logprobs": []}),
        ("response.content_part.done", {**ids, "part": {**part, "text": text}}),
        ("response.output_item.done", {"output_index": 0, "item": done}),
        ("response.completed", {"response": _response("completed", [done])}),
    )


async def test_responses_api_function_call_then_text(
    httpx2_mock: respx.Router,
    settings: Settings,
    chat: DoableChatServer,
    chatkit_as: Callable[[str], ChatKitClient],
    runtime: Runtime,
) -> None:
    chat.model = select_model(settings.model_copy(update={"openai_api_key": SecretStr("sk-test")}))
    route = httpx2_mock.post(RESPONSES_URL).mock(
        side_effect=[responses_function_call("add_task", {"title": "Buy milk"}), responses_text("Added 'Buy milk'.")]
    )

    turn = await chatkit_as("alice").create("add buy milk")

    assert turn.replies == ["Added 'Buy milk'."]
    assert turn.progress == ["Adding 'Buy milk'…"]
    page, _ = await runtime.service.list("alice", ListRequest())
    assert [t.title for t in page.tasks] == ["Buy milk"]
    first, second = (json.loads(call.request.content) for call in route.calls)
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-test"
    assert first["model"] == "gpt-5.6-luna" and first["stream"] is True
    assert "Thursday, 2026-11-26" in first["instructions"]
    assert first["input"][-1]["content"][0]["text"] == "add buy milk"
    add_task = next(t for t in first["tools"] if t["name"] == "add_task")
    assert "user_id" not in add_task["parameters"]["properties"]
    output = next(i for i in second["input"] if i.get("type") == "function_call_output")
    assert output["call_id"] == "call_1" and json.loads(output["output"])["status"] == "created"


async def test_a_rejected_api_key_becomes_a_clear_error(
    httpx2_mock: respx.Router, settings: Settings, chat: DoableChatServer, chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    chat.model = select_model(settings.model_copy(update={"openai_api_key": SecretStr("sk-wrong")}))
    httpx2_mock.post(RESPONSES_URL).mock(
        return_value=httpx.Response(
            401, json={"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}
        )
    )

    turn = await chatkit_as("alice").create("hello")

    [error] = turn.errors
    assert "refused the API key" in error["message"] and "sk-wrong" not in json.dumps(turn.events)


# ---- Chat Completions (Ollama, vLLM, LM Studio) --------------------------------------------


def chunks(*deltas: dict[str, Any], finish: str) -> httpx.Response:
    def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1764158400,
            "model": "llama3.1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }

    events: list[tuple[str | None, dict[str, Any] | str]] = [(None, chunk(d, None)) for d in deltas]
    return sse([*events, (None, chunk({}, finish)), (None, "[DONE]")])


def completions_tool_call(name: str, arguments: dict[str, Any]) -> httpx.Response:
    return chunks(
        {
            "role": "assistant",
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
            ],
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(arguments)}}]},
        finish="tool_calls",
    )


def completions_text(*pieces: str) -> httpx.Response:
    return chunks({"role": "assistant", "content": pieces[0]}, *({"content": p} for p in pieces[1:]), finish="stop")


async def test_an_openai_compatible_server_over_chat_completions(
    httpx2_mock: respx.Router,
    settings: Settings,
    chat: DoableChatServer,
    chatkit_as: Callable[[str], ChatKitClient],
    runtime: Runtime,
) -> None:
    chat.model = select_model(settings.model_copy(update={"openai_base_url": OLLAMA_URL, "model": "llama3.1"}))
    route = httpx2_mock.post(f"{OLLAMA_URL}/chat/completions").mock(
        side_effect=[
            completions_tool_call("add_task", {"title": "Buy milk"}),
            completions_text("Added ", "'Buy milk'."),
            completions_text("You're welcome!"),
        ]
    )
    alice = chatkit_as("alice")

    first = await alice.create("add buy milk")
    await alice.say(first.thread_id, "thanks")

    page, _ = await runtime.service.list("alice", ListRequest())
    assert [t.title for t in page.tasks] == ["Buy milk"]
    request = json.loads(route.calls[0].request.content)
    assert request["model"] == "llama3.1" and request["stream"] is True
    assert "reasoning_effort" not in request
    assert request["messages"][0]["role"] == "system" and "Thursday, 2026-11-26" in request["messages"][0]["content"]
    assert any(t["function"]["name"] == "add_task" for t in request["tools"])
    # Every answer is its own item, despite the SDK's "__fake_id__" for Chat Completions messages.
    items = (await alice.items(first.thread_id, order="asc"))["data"]
    replies = [(i["id"], i["content"][0]["text"]) for i in items if i["type"] == "assistant_message"]
    assert [text for _, text in replies] == ["Added 'Buy milk'.", "You're welcome!"]
    assert len({item_id for item_id, _ in replies}) == 2 and "__fake_id__" not in dict(replies)
    # The second turn replayed the first from the thread.
    history = json.loads(route.calls[2].request.content)["messages"]
    assert [m["role"] for m in history[1:]] == ["user", "assistant", "user"]
