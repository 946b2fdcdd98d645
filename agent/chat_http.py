"""The chat's protocol side, loaded on first use (or in the background once the app is ready):
the ChatKit server, its model and MCP link, and the request handling of both chat endpoints.

agent.routes mounts the routes without importing this module, so `doable serve` is ready before
the Agents SDK and ChatKit are imported (issue 19: cold start).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

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
from fastapi import Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from agent.context import ChatContext, ChatFailure
from agent.mcp_link import McpLink, loopback_mcp_url
from agent.models import ChatModel, select_model
from agent.routes import SpecChatResponse, ToolCallOut
from agent.server import DoableChatServer
from doable.domain.clock import Clock
from doable.platform.auth import ServiceTokens
from doable.platform.settings import Settings
from doable.usecases.service import TaskService
from doable.web.errors import error_body, validation_message

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


@dataclass
class ChatEndpoints:
    """What both chat endpoints do once a request has passed authentication."""

    server: DoableChatServer
    store: Store[ChatContext]
    model: ChatModel | None
    max_chars: int

    async def chatkit(self, body: bytes, user_id: str) -> Response:
        """One ChatKit protocol request: JSON, or an SSE stream for streaming requests."""
        context = ChatContext(user_id=user_id)
        try:
            parsed = _REQUEST.validate_json(body)
        except ValidationError as exc:
            message, fields = validation_message(list(exc.errors()))
            return JSONResponse(error_body("invalid_request", message, fields=fields), status_code=400)
        try:
            await preflight(parsed, self.store, context, self.max_chars)
            result = await self.server.process(body, context)
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

    async def spec(self, conversation_id: str | int | None, message: str, user_id: str) -> Response:
        """One turn of the specification's endpoint: the reply text and the MCP tool calls."""
        context = ChatContext(user_id=user_id)
        thread_id = None if conversation_id is None else str(conversation_id)
        try:
            check_message(message, self.max_chars)
            if thread_id is not None:
                await self.store.load_thread(thread_id, context)
        except Rejected as exc:
            return exc.response()
        except NotFoundError:
            return JSONResponse(error_body("not_found", f"conversation {thread_id} not found"), status_code=404)
        thread_id, replies, error = await _spec_turn(self.server, context, thread_id, message)
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

    async def aclose(self) -> None:
        if self.model is not None:
            await self.model.aclose()


def build_endpoints(
    settings: Settings,
    *,
    service: TaskService,
    clock: Clock,
    store: Callable[[], Store[ChatContext]],
    tokens: ServiceTokens,
) -> ChatEndpoints:
    """The ChatKit server with its Store, model and MCP link, built once per app."""
    model = select_model(settings)
    chat_store = store()
    server = DoableChatServer(
        chat_store,
        service=service,
        clock=clock,
        link=McpLink(settings.mcp_url or loopback_mcp_url(settings), tokens),
        model=model,
        history_tokens=settings.chat_history_tokens,
        max_turns=settings.chat_max_turns,
    )
    if model is None:
        log.warning("chat.unconfigured", hint="set OPENAI_API_KEY or OPENAI_BASE_URL")
    else:
        log.info("chat.model", model=model.label, tracing=model.tracing)
    return ChatEndpoints(server=server, store=chat_store, model=model, max_chars=settings.chat_message_max_chars)
