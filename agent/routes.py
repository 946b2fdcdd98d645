"""HTTP for chat: `POST /chatkit` (the ChatKit protocol) and `POST /api/{user_id}/chat` (the spec's).

Both are JWT-authenticated like the rest of the API and share one ChatKit server, so a
conversation started on one continues on the other. Requests are checked before ChatKit
sees them: once a stream has started, a missing thread could only be an error event,
and the protocol promises clear 400/404 answers instead.

This module mounts the routes without the chat stack: the ChatKit server (agent.chat_http, which
imports the Agents SDK and ChatKit) is built when the app starts, or in the background once it
is ready, and a chat request that comes first waits for it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from doable.domain.clock import Clock
from doable.platform.auth import Identity, ServiceTokens
from doable.platform.settings import Settings
from doable.usecases.service import TaskService
from doable.web.security import CurrentUser

if TYPE_CHECKING:
    from chatkit.store import Store

    from agent.chat_http import ChatEndpoints
    from agent.context import ChatContext

log = structlog.get_logger("doable.chat")

# Builds the chat Store adapter the composition root chose (called once, when the chat loads).
ChatStoreFactory = Callable[[], "Store[ChatContext]"]


class SpecChatRequest(BaseModel):
    """`conversation_id` is the thread id returned earlier (a string like "thr_…"; the spec's
    integer ids are accepted too, and are simply not found). Omit it to start a conversation."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: Annotated[str | int | None, Field(description="Thread id from an earlier reply.")] = None
    message: Annotated[str, Field(min_length=1, description="What the user says.")]


class ToolCallOut(BaseModel):
    tool: str
    arguments: dict[str, Any]
    result: Any


class SpecChatResponse(BaseModel):
    conversation_id: str
    response: str
    tool_calls: list[ToolCallOut]


async def same_user(user_id: str, identity: CurrentUser) -> Identity:
    if user_id != identity.user_id:
        raise HTTPException(status_code=403, detail="the user_id in the URL must be the signed-in user")
    return identity


class LazyChat:
    """The chat endpoints, built once: imported on a thread (so the event loop keeps serving),
    then built on the loop. Every caller awaits the same build."""

    def __init__(self, build: Callable[[], ChatEndpoints]) -> None:
        self._build = build
        self._loading: asyncio.Future[ChatEndpoints] | None = None

    async def _load(self) -> ChatEndpoints:
        await asyncio.to_thread(importlib.import_module, "agent.chat_http")
        return self._build()

    async def get(self) -> ChatEndpoints:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        return await asyncio.shield(self._loading)

    async def aclose(self) -> None:
        loading, self._loading = self._loading, None
        if loading is None:
            return
        if not loading.done():
            loading.cancel()
        try:
            endpoints = await loading
        except asyncio.CancelledError:
            return
        except Exception:  # the failed build was logged by its awaiters; nothing to close
            return
        await endpoints.aclose()


def build_chat_router(
    settings: Settings,
    *,
    service: TaskService,
    clock: Clock,
    store: ChatStoreFactory,
    tokens: ServiceTokens,
    load_after: asyncio.Event | None = None,
) -> APIRouter:
    """The chat routes. The ChatKit server, its Store, model and MCP link are built once, when the
    app starts, or in the background once `load_after` is set (`doable serve`: once the server
    listens, so that chat costs a cold start nothing)."""

    def build() -> ChatEndpoints:
        from agent.chat_http import build_endpoints

        return build_endpoints(settings, service=service, clock=clock, store=store, tokens=tokens)

    chat = LazyChat(build)

    async def publish(app: FastAPI) -> None:
        # The ChatKit server, for tests and tools that reach into it (its model, its MCP link).
        app.state.chat = (await chat.get()).server

    async def preload(app: FastAPI, after: asyncio.Event) -> None:
        await after.wait()  # importing the chat stack sooner would slow the start it was deferred from
        try:
            await publish(app)
        except Exception as exc:  # each chat request answers with the failure; the app serves the rest
            log.error("chat.load_failed", error_type=type(exc).__name__)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(preload(app, load_after)) if load_after is not None else None
        if loading is None:
            await publish(app)
        try:
            yield
        finally:
            if loading is not None:
                loading.cancel()
            await chat.aclose()

    router = APIRouter(tags=["chat"], lifespan=lifespan)

    @router.post(
        "/chatkit",
        summary="ChatKit protocol endpoint",
        responses={
            200: {"description": "JSON, or an SSE stream (text/event-stream) for streaming requests"},
            400: {"description": "Malformed or unsupported request"},
            401: {"description": "Missing or invalid bearer token"},
            404: {"description": "Thread or item not found"},
            422: {"description": "Empty or too long message"},
        },
    )
    async def chatkit(request: Request, identity: CurrentUser) -> Response:
        """The single endpoint the ChatKit JS client talks to (`api.url`), authenticated by bearer JWT."""
        body = await request.body()
        return await (await chat.get()).chatkit(body, identity.user_id)

    @router.post(
        "/api/{user_id}/chat",
        response_model=SpecChatResponse,
        summary="Send a chat message (the specification's endpoint)",
        responses={
            403: {"description": "user_id is not the signed-in user"},
            404: {"description": "Unknown conversation_id"},
            502: {"description": "The model provider failed"},
            503: {"description": "Chat has no model configured, or a backend is unavailable"},
        },
    )
    async def spec_chat(body: SpecChatRequest, identity: Annotated[Identity, Depends(same_user)]) -> Response:
        """One turn: the reply text and the MCP tool calls the agent made. Threads are shared with ChatKit."""
        return await (await chat.get()).spec(body.conversation_id, body.message, identity.user_id)

    return router
