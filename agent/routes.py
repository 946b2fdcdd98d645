"""HTTP for chat: `POST /chatkit` (the ChatKit protocol) and `POST /api/{user_id}/chat` (the spec's).

Both are JWT-authenticated like the rest of the API and share one ChatKit server, so a
conversation started on one continues on the other. Requests are checked before ChatKit
sees them: once a stream has started, a missing thread could only be an error event,
and the protocol promises clear 400/404 answers instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from chatkit.server import StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    AssistantMessageItem,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    ChatKitReq,
    ErrorEvent,
    InferenceOptions,
    InputTranscribeReq,
    ThreadAddUserMessageParams,
    ThreadCreatedEvent,
    ThreadCreateParams,
    ThreadItemDoneEvent,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
    ThreadStreamEvent,
    UserMessageInput,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
)
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.context import ChatContext, ChatFailure
from agent.mcp_link import McpLink, loopback_mcp_url
from agent.models import select_model
from agent.server import DoableChatServer
from agent.store import build_chat_store
from doable.auth import Identity, ServiceTokens
from doable.runtime import Runtime
from doable.web.errors import error_body, validation_message
from doable.web.security import CurrentUser

log = structlog.get_logger("doable.chat")

_REQUEST = TypeAdapter[ChatKitReq](ChatKitReq)
_EVENT = TypeAdapter[ThreadStreamEvent](ThreadStreamEvent)
_UNSUPPORTED: dict[type[BaseModel], str] = {
    AttachmentsCreateReq: "attachments are not supported",
    AttachmentsDeleteReq: "attachments are not supported",
    InputTranscribeReq: "dictation is not supported",
    ThreadsSyncCustomActionReq: "synchronous widget actions are not supported",
    ThreadsAddClientToolOutputReq: "this server defines no client tools",
    ThreadsAddStructuredInputReq: "this server asks for no structured input",
}


class Rejected(Exception):
    """A request refused before processing, with its HTTP status and a message for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.code, self.message), status_code=self.status)


def message_text(message: UserMessageInput) -> str:
    return "".join(p.text for p in message.content if isinstance(p, UserMessageTextContent | UserMessageTagContent))


def check_message(text: str, max_chars: int) -> None:
    if not text.strip():
        raise Rejected(422, "invalid_argument", "message: must not be empty")
    if len(text) > max_chars:
        raise Rejected(422, "invalid_argument", f"message: must be at most {max_chars} characters (got {len(text)})")


async def preflight(request: ChatKitReq, store: Store[ChatContext], context: ChatContext, max_chars: int) -> None:
    """Refuse what ChatKit would only fail on mid-stream: unsupported kinds, foreign or unknown
    threads and items (404: another user's thread is simply not found), bad messages."""
    if (reason := _UNSUPPORTED.get(type(request))) is not None:
        raise Rejected(400, "unsupported", reason)
    params = request.params
    thread_id = getattr(params, "thread_id", None)
    if isinstance(thread_id, str):
        await store.load_thread(thread_id, context)
        item_id = getattr(params, "item_id", None)
        if isinstance(item_id, str):
            item = await store.load_item(thread_id, item_id, context)
            if isinstance(request, ThreadsRetryAfterItemReq) and not isinstance(item, UserMessageItem):
                raise Rejected(400, "invalid_request", f"item {item_id} is not a user message")
            if isinstance(request, ThreadsCustomActionReq) and not isinstance(item, WidgetItem):
                raise Rejected(400, "invalid_request", f"item {item_id} is not a widget")
    if isinstance(request, ThreadsCreateReq | ThreadsAddUserMessageReq):
        if request.params.input.attachments:
            raise Rejected(400, "unsupported", "attachments are not supported")
        check_message(message_text(request.params.input), max_chars)


async def _guarded(stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Ends a broken stream with an error event rather than a cut connection."""
    try:
        async for chunk in stream:
            yield chunk
    except Exception as exc:
        log.error("chat.stream_broken", error_type=type(exc).__name__)
        event = ErrorEvent(message="The answer was interrupted. Please try again.", allow_retry=True)
        yield b"data: " + event.model_dump_json().encode() + b"\n\n"


# ---- the spec's endpoint -------------------------------------------------------------------


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


def _spec_request(conversation_id: str | None, message: str) -> str:
    text_input = UserMessageInput(
        content=[UserMessageTextContent(text=message)], attachments=[], inference_options=InferenceOptions()
    )
    if conversation_id is None:
        return ThreadsCreateReq(params=ThreadCreateParams(input=text_input)).model_dump_json()
    return ThreadsAddUserMessageReq(
        params=ThreadAddUserMessageParams(thread_id=conversation_id, input=text_input)
    ).model_dump_json()


async def _spec_turn(
    server: DoableChatServer, context: ChatContext, thread_id: str | None, message: str
) -> tuple[str, list[str], ErrorEvent | None]:
    """Run one turn as a ChatKit client would (same persistence, same thread); return the
    thread id, the assistant's replies and the error event, if any."""
    result = await server.process(_spec_request(thread_id, message), context)
    if not isinstance(result, StreamingResult):  # both request kinds stream; anything else is a ChatKit change
        raise TypeError("ChatKit answered a streaming request without a stream")
    replies: list[str] = []
    error: ErrorEvent | None = None
    async for chunk in result:
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data: "):
                continue
            event = _EVENT.validate_json(line[len(b"data: ") :])
            if isinstance(event, ThreadCreatedEvent):
                thread_id = event.thread.id
            elif isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, AssistantMessageItem):
                replies.append("".join(part.text for part in event.item.content))
            elif isinstance(event, ErrorEvent):
                error = event
    return thread_id or "", replies, error


# ---- wiring --------------------------------------------------------------------------------


def build_chat_router(runtime: Runtime, tokens: ServiceTokens) -> APIRouter:
    """The chat routes, with the ChatKit server and its Store, model and MCP link built once."""
    settings = runtime.settings
    store = build_chat_store(runtime)
    model = select_model(settings)
    server = DoableChatServer(
        store,
        service=runtime.service,
        clock=runtime.clock,
        link=McpLink(settings.mcp_url or loopback_mcp_url(settings), tokens),
        model=model,
        history_tokens=settings.chat_history_tokens,
        max_turns=settings.chat_max_turns,
    )
    max_chars = settings.chat_message_max_chars

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.chat = server
        if model is None:
            log.warning("chat.unconfigured", hint="set OPENAI_API_KEY or OPENAI_BASE_URL")
        else:
            log.info("chat.model", model=model.label, tracing=model.tracing)
        try:
            yield
        finally:
            if model is not None:
                await model.aclose()

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
        context = ChatContext(user_id=identity.user_id)
        try:
            parsed = _REQUEST.validate_json(body)
        except ValidationError as exc:
            message, fields = validation_message(list(exc.errors()))
            return JSONResponse(error_body("invalid_request", message, fields=fields), status_code=400)
        try:
            await preflight(parsed, store, context, max_chars)
            result = await server.process(body, context)
        except Rejected as exc:
            return exc.response()
        except NotFoundError as exc:
            return JSONResponse(error_body("not_found", str(exc)), status_code=404)
        if isinstance(result, StreamingResult):
            return StreamingResponse(
                _guarded(result),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return Response(content=result.json, media_type="application/json")

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
        context = ChatContext(user_id=identity.user_id)
        thread_id = None if body.conversation_id is None else str(body.conversation_id)
        try:
            check_message(body.message, max_chars)
            if thread_id is not None:
                await store.load_thread(thread_id, context)
        except Rejected as exc:
            return exc.response()
        except NotFoundError:
            return JSONResponse(error_body("not_found", f"conversation {thread_id} not found"), status_code=404)
        thread_id, replies, error = await _spec_turn(server, context, thread_id, body.message)
        failure = context.failure or (
            ChatFailure(500, "internal", error.message or "The answer failed. Please try again.") if error else None
        )
        if failure is not None:
            return JSONResponse(
                error_body(failure.code, failure.message, conversation_id=thread_id), status_code=failure.status
            )
        reply = SpecChatResponse(
            conversation_id=thread_id,
            response="\n\n".join(r for r in replies if r),
            tool_calls=[ToolCallOut(**call.as_dict()) for call in context.tool_calls],
        )
        return Response(content=reply.model_dump_json(), media_type="application/json")

    return router
