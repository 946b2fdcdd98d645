"""The ChatKit server: a thin adapter that runs one agent turn per user message.

A turn: title the thread from its first message, read the user's timezone and the
thread's history, connect to the MCP tools as the user, run the agent, and stream its
answer (with progress lines while tools run, and the task list as a widget when the
turn ended by listing tasks). Widget buttons complete tasks through the TaskService.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import structlog
from agents import RunConfig, Runner
from chatkit.actions import Action
from chatkit.agents import AgentContext, stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, stream_widget
from chatkit.store import Store
from chatkit.types import (
    AssistantMessageItem,
    HiddenContextItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
)

from agent.assistant import build_assistant
from agent.context import ChatContext, ChatFailure
from agent.failures import STORAGE_UNAVAILABLE, TASKS_UNREACHABLE, UNCONFIGURED, model_failure, unexpected
from agent.history import history_input
from agent.mcp_link import McpLink
from agent.models import ChatModel
from agent.progress import TurnHooks
from agent.widgets import (
    COMPLETE_ACTION,
    task_list_copy_text,
    task_list_from,
    task_list_widget,
    with_line_replaced,
    with_row_replaced,
)
from doable.domain.clock import Clock
from doable.domain.errors import DoableError, Unavailable
from doable.platform.logs import current_trace_id
from doable.usecases.service import TaskService
from doable.usecases.views import task_view

log = structlog.get_logger("doable.chat")

TITLE_MAX = 60


def title_from(message: UserMessageItem) -> str:
    """A thread title from its first message: the text, on one line, cut at a word near 60 chars."""
    parts = [
        p.text if isinstance(p, UserMessageTextContent) else f"@{p.text}"
        for p in message.content
        if isinstance(p, UserMessageTextContent | UserMessageTagContent)
    ]
    text = " ".join(" ".join(parts).split())
    if not text:
        return "New chat"
    if len(text) <= TITLE_MAX:
        return text
    cut = text[: TITLE_MAX - 1]
    if " " in cut[TITLE_MAX // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


async def unique_item_ids(
    ctx: AgentContext[ChatContext], events: AsyncIterator[ThreadStreamEvent]
) -> AsyncIterator[ThreadStreamEvent]:
    """Give every assistant message a fresh Store id.

    ChatKit reuses the model's message id as the item id. Chat Completions providers have
    none (the Agents SDK stamps "__fake_id__" on all of them, chatkit-python#36), and a
    reused id would overwrite an earlier answer in the thread, so ids are always remapped.
    """
    current: dict[str, str] = {}
    async for event in events:
        if isinstance(event, ThreadItemAddedEvent) and isinstance(event.item, AssistantMessageItem):
            current[event.item.id] = ctx.generate_id("message")
            event = ThreadItemAddedEvent(item=event.item.model_copy(update={"id": current[event.item.id]}))
        elif isinstance(event, ThreadItemUpdatedEvent) and event.item_id in current:
            event = event.model_copy(update={"item_id": current[event.item_id]})
        elif isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, AssistantMessageItem):
            new_id = current.pop(event.item.id, None) or ctx.generate_id("message")
            event = ThreadItemDoneEvent(item=event.item.model_copy(update={"id": new_id}))
        elif isinstance(event, ThreadItemRemovedEvent) and event.item_id in current:
            event = ThreadItemRemovedEvent(item_id=current.pop(event.item_id))
        yield event


class DoableChatServer(ChatKitServer[ChatContext]):
    """Chat about tasks: every turn is the agent, the user's MCP tools and the thread's history."""

    def __init__(
        self,
        store: Store[ChatContext],
        *,
        service: TaskService,
        clock: Clock,
        link: McpLink,
        model: ChatModel | None,
        history_tokens: int,
        max_turns: int,
    ) -> None:
        super().__init__(store)
        self.link = link
        self.model = model
        self._service = service
        self._clock = clock
        self._history_tokens = history_tokens
        self._max_turns = max_turns

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: ChatContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is not None and not thread.title:
            thread.title = title_from(input_user_message)  # ChatKit saves it and emits thread.updated
        chat_model = self.model
        if chat_model is None:
            raise _failed(context, UNCONFIGURED, allow_retry=False)
        try:
            profile = await self._service.get_profile(context.user_id)
            agent_input = await history_input(self.store, thread, context, budget_tokens=self._history_tokens)
        except Unavailable:
            raise _failed(context, STORAGE_UNAVAILABLE, allow_retry=True) from None
        now = self._clock.now().astimezone(profile.tz)
        agent_ctx: AgentContext[ChatContext] = AgentContext(thread=thread, store=self.store, request_context=context)
        hooks = TurnHooks()
        tools = self.link.for_user(context.user_id)
        try:
            await tools.connect()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        except Exception as exc:
            log.warning("chat.tools_unreachable", error_type=type(exc).__name__)
            raise _failed(context, TASKS_UNREACHABLE, allow_retry=True) from None
        try:
            result = Runner.run_streamed(
                build_assistant(chat_model, tools, now),
                agent_input,
                context=agent_ctx,
                hooks=hooks,
                max_turns=self._max_turns,
                run_config=RunConfig(
                    tracing_disabled=not chat_model.tracing,
                    trace_include_sensitive_data=False,
                    workflow_name="Doable chat",
                ),
            )
            async for event in unique_item_ids(agent_ctx, stream_agent_response(agent_ctx, result)):
                yield event
        except CustomStreamError:
            raise
        except Exception as exc:
            failure = model_failure(exc, model=chat_model.name)
            if failure is None:
                log.error("chat.turn_failed", error_type=type(exc).__name__, exc_info=exc)
                failure = unexpected(current_trace_id())
            else:
                log.warning("chat.model_failed", code=failure.code, error_type=type(exc).__name__)
            raise _failed(context, failure, allow_retry=failure.status != 502) from None
        finally:
            await tools.cleanup()  # type: ignore[no-untyped-call]
        log.info("chat.turn", tools=[c.tool for c in context.tool_calls], model=chat_model.label)
        async for event in self._task_list_widget(thread, hooks, context):
            yield event

    async def _task_list_widget(
        self, thread: ThreadMetadata, hooks: TurnHooks, context: ChatContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """When the turn ended by listing tasks, the list again as a widget with Done buttons."""
        listing = task_list_from(hooks.last_result) if hooks.last_tool == "list_tasks" else None
        if not listing or not listing[0]:
            return
        tasks, total = listing
        async for event in stream_widget(
            thread,
            task_list_widget(tasks, total=total),
            copy_text=task_list_copy_text(tasks),
            generate_id=lambda item_type: self.store.generate_item_id(item_type, thread, context),
        ):
            yield event

    async def action(
        self, thread: ThreadMetadata, action: Action[str, Any], sender: WidgetItem | None, context: ChatContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The task list's Done button: complete the task, redraw its row, tell the agent."""
        payload = action.payload if isinstance(action.payload, dict) else {}
        task_id = payload.get("task_id")
        if action.type != COMPLETE_ACTION or sender is None or not isinstance(task_id, int):
            raise CustomStreamError("That button doesn't do anything any more.", allow_retry=False)
        try:
            task = await self._service.complete(context.user_id, task_id)
            tz = (await self._service.get_profile(context.user_id)).tz
        except DoableError as exc:
            raise CustomStreamError(f"Couldn't complete task {task_id}: {exc.message}.", allow_retry=False) from None
        view = task_view(task, tz).model_dump(mode="json")
        log.info("chat.widget_completed", task_id=task.task_id)
        yield ThreadItemReplacedEvent(
            item=sender.model_copy(
                update={
                    "widget": with_row_replaced(sender.widget, view),
                    "copy_text": with_line_replaced(sender.copy_text or "", view),
                }
            )
        )
        # Hidden from the UI, but part of the history the agent reads next turn.
        yield ThreadItemDoneEvent(
            item=HiddenContextItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=f"The user marked task #{task.task_id} '{task.title}' as done with the list's Done button.",
            )
        )


def _failed(context: ChatContext, failure: ChatFailure, *, allow_retry: bool) -> CustomStreamError:
    """Record the failure for the spec endpoint and build the ChatKit error to raise."""
    context.failure = failure
    return CustomStreamError(failure.message, allow_retry=allow_retry)
