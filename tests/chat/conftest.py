"""Chat fixtures: the real app with a scripted (or HTTP-mocked) model, its MCP link routed
in-process, a manual clock, and a small ChatKit client that speaks the protocol as chatkit.js does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from agents import ModelSettings
from agents.testing import ScriptedModel
from agents.testing.model import ModelStepResult

from agent.mcp_link import in_process
from agent.models import ChatModel
from agent.server import DoableChatServer
from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.conftest import auth


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No model from the environment: each test picks a scripted or HTTP-mocked one."""
    return settings.model_copy(update={"openai_api_key": None, "openai_base_url": None, "openai_tracing": False})


@pytest.fixture
async def runtime(settings: Settings, clock: ManualClock) -> AsyncIterator[Runtime]:
    """Thursday 2026-11-26 12:00 UTC, so "tomorrow" is a known date."""
    rt = await build(settings, clock=clock)
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture
def chat(app: Any) -> DoableChatServer:
    """The app's ChatKit server, its MCP connections going to the same app in-process."""
    server: DoableChatServer = app.state.chat
    server.link.client_factory = in_process(app)
    return server


ScriptInstaller = Callable[[Iterable[ModelStepResult]], ScriptedModel]


@pytest.fixture
def script(chat: DoableChatServer) -> ScriptInstaller:
    """`model = script([...steps])` makes the chat run that ScriptedModel."""

    def install(steps: Iterable[ModelStepResult]) -> ScriptedModel:
        model = ScriptedModel(steps)
        chat.model = ChatModel(model=model, settings=ModelSettings(), name="test", api="scripted", tracing=False)
        return model

    return install


def text_input(text: str) -> dict[str, Any]:
    """A user message `input` exactly as chatkit.js sends it."""
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "quoted_text": None,
        "inference_options": {"tool_choice": None, "model": None},
    }


def sse_events(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")]


@dataclass
class Turn:
    """The events of one streamed ChatKit request."""

    events: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def thread_id(self) -> str:
        return str(self.of("thread.created")[0]["thread"]["id"])

    @property
    def replies(self) -> list[str]:
        return [
            "".join(part["text"] for part in e["item"]["content"])
            for e in self.of("thread.item.done")
            if e["item"]["type"] == "assistant_message"
        ]

    @property
    def progress(self) -> list[str]:
        return [e["text"] for e in self.of("progress_update")]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.of("error")


class ChatKitClient:
    """The requests chatkit.js makes, over real HTTP to the ASGI app."""

    def __init__(self, http: httpx2.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token

    async def post(self, body: dict[str, Any] | bytes) -> httpx2.Response:
        content = body if isinstance(body, bytes) else json.dumps({"metadata": {}, **body}).encode()
        return await self.http.post(
            "/chatkit", content=content, headers={**auth(self.token), "Content-Type": "application/json"}
        )

    async def stream(self, body: dict[str, Any]) -> Turn:
        response = await self.post(body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        return Turn(sse_events(response.text))

    async def request(self, body: dict[str, Any]) -> Any:
        response = await self.post(body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()

    async def create(self, text: str) -> Turn:
        return await self.stream({"type": "threads.create", "params": {"input": text_input(text)}})

    async def say(self, thread_id: str, text: str) -> Turn:
        return await self.stream(
            {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": text_input(text)}}
        )

    async def threads(self, **params: Any) -> Any:
        return await self.request({"type": "threads.list", "params": params})

    async def items(self, thread_id: str, **params: Any) -> Any:
        return await self.request({"type": "items.list", "params": {"thread_id": thread_id, **params}})

    async def thread(self, thread_id: str) -> Any:
        return await self.request({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})

    async def delete(self, thread_id: str) -> Any:
        return await self.request({"type": "threads.delete", "params": {"thread_id": thread_id}})


@pytest.fixture
def chatkit_as(
    http: httpx2.AsyncClient, token_for: Callable[..., str], chat: DoableChatServer
) -> Callable[[str], ChatKitClient]:
    """`alice = chatkit_as("alice")`: a ChatKit client signed in as alice."""
    return lambda user: ChatKitClient(http, token_for(user))


@dataclass
class Process:
    """One `doable serve`: its runtime, app and chat server, and an HTTP client to it."""

    runtime: Runtime
    app: Any
    chat: DoableChatServer
    http: httpx2.AsyncClient

    def chatkit(self, token: str) -> ChatKitClient:
        return ChatKitClient(self.http, token)

    def script(self, steps: Iterable[ModelStepResult]) -> ScriptedModel:
        model = ScriptedModel(steps)
        self.chat.model = ChatModel(model=model, settings=ModelSettings(), name="test", api="scripted", tracing=False)
        return model


@asynccontextmanager
async def serving(settings: Settings, clock: ManualClock) -> AsyncIterator[Process]:
    """Start a process on `settings` (same data dir = same database), and stop it afterwards."""
    runtime = await build(settings, clock=clock)
    try:
        app = create_app(runtime)
        async with app.router.lifespan_context(app):
            chat: DoableChatServer = app.state.chat
            chat.link.client_factory = in_process(app)
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                yield Process(runtime, app, chat, http)
    finally:
        await runtime.aclose()
