"""A model server that misbehaves on the wire: a 200 whose body is not what the API promises
(not JSON, not an event stream), or a stream cut before its end. Either way the turn is a clear
error on both chat endpoints, never an empty reply or partial text passed off as the whole answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from agent.models import select_model
from agent.server import DoableChatServer
from doable.platform.settings import Settings
from tests.chat.conftest import ChatKitClient
from tests.chat.test_wire import OLLAMA_URL, RESPONSES_URL, chunks, responses_text, sse
from tests.conftest import auth


def _cut(response: httpx.Response, keep: Callable[[list[bytes]], list[bytes]]) -> httpx.Response:
    events = [e for e in response.content.split(b"\n\n") if e]
    kept = keep(events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"\n\n".join(kept) + b"\n\n")


def _responses_cut() -> httpx.Response:
    # Up to the text delta: the text has begun, the item and the response never finish.
    return _cut(responses_text("Here are your tasks: Buy milk, Call mom"), lambda events: events[:4])


def _completions_cut() -> httpx.Response:
    # Content chunks, then the connection ends: no finish_reason, no [DONE].
    return _cut(
        chunks({"role": "assistant", "content": "Here are "}, {"content": "your tasks"}, finish="stop"), lambda e: e[:2]
    )


NOT_JSON = [
    httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html><body>Bad gateway</body></html>"),
    httpx.Response(200, headers={"content-type": "application/json"}, content=b"this is not json"),
    httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: {not json\n\n"),
    httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b""),
    httpx.Response(200, headers={"content-type": "application/json"}, content=json.dumps({"ok": True}).encode()),
]

CASES: dict[str, tuple[str, Callable[[], httpx.Response]]] = {
    **{f"responses: 200, {i}": ("responses", (lambda r=r: r)) for i, r in enumerate(NOT_JSON)},
    **{f"completions: 200, {i}": ("completions", (lambda r=r: r)) for i, r in enumerate(NOT_JSON)},
    "responses: stream cut mid-text": ("responses", _responses_cut),
    "completions: stream cut mid-text": ("completions", _completions_cut),
    "completions: sse with an error event": (
        "completions",
        lambda: sse([(None, {"error": {"message": "model crashed"}})]),
    ),
}


def _install(
    api: str, settings: Settings, chat: DoableChatServer, httpx2_mock: respx.Router, reply: httpx.Response
) -> None:
    if api == "responses":
        chat.model = select_model(settings.model_copy(update={"openai_api_key": SecretStr("sk-test")}))
        httpx2_mock.post(RESPONSES_URL).mock(return_value=reply)
    else:
        chat.model = select_model(settings.model_copy(update={"openai_base_url": OLLAMA_URL, "model": "llama3.1"}))
        httpx2_mock.post(f"{OLLAMA_URL}/chat/completions").mock(return_value=reply)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_reply_the_agent_cannot_use_is_a_clear_error_over_chatkit(
    case: str,
    httpx2_mock: respx.Router,
    settings: Settings,
    chat: DoableChatServer,
    chatkit_as: Callable[[str], ChatKitClient],
) -> None:
    api, reply = CASES[case]
    _install(api, settings, chat, httpx2_mock, reply())

    turn = await chatkit_as("alice").create("what's on my list?")

    assert turn.errors, (case, turn.events)
    assert turn.replies == [], (case, turn.replies)  # no partial or empty answer kept as if complete


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_reply_the_agent_cannot_use_is_a_clear_error_on_the_spec_endpoint(
    case: str,
    httpx2_mock: respx.Router,
    settings: Settings,
    chat: DoableChatServer,
    http: Any,
    token_for: Callable[..., str],
) -> None:
    api, reply = CASES[case]
    _install(api, settings, chat, httpx2_mock, reply())

    answer = await http.post(
        "/api/alice/chat", json={"message": "what's on my list?"}, headers=auth(token_for("alice"))
    )

    assert answer.status_code in (502, 503), (case, answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    assert body["error"] in ("model_error", "model_unavailable") and body["message"], body
    assert "response" not in body


async def test_a_whole_stream_over_a_real_connection_is_not_taken_for_a_cut_one() -> None:
    """The OpenAI client stops reading at `[DONE]` and drains the rest in a second pass over the
    body; the checks must count the end seen in the first pass (a real socket, not a mock that
    replays the body, is what exposed it: every chat turn of `doable serve` was 'cut off')."""
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner
    from openai import AsyncOpenAI

    from agent.wire import checked_client

    body = (
        b"".join(
            b"data: " + json.dumps(c).encode() + b"\n\n"
            for c in (
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": "All done."}, "finish_reason": None}
                    ],
                },
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                },
            )
        )
        + b"data: [DONE]\n\n"
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = AsyncOpenAI(
        api_key="x", base_url=f"http://127.0.0.1:{server.server_port}/v1", http_client=checked_client(10)
    )
    try:
        agent = Agent(name="a", model=OpenAIChatCompletionsModel(model="m", openai_client=client))
        result = Runner.run_streamed(agent, "hi", run_config=RunConfig(tracing_disabled=True))
        async for _ in result.stream_events():
            await asyncio.sleep(0)
        assert result.final_output == "All done."
    finally:
        await client.close()
        server.shutdown()
        server.server_close()
