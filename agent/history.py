"""The agent's input for a turn: the thread's own history, newest last, within a token budget.

The thread in the Store is the conversation memory, so a turn needs no server state
(no previous_response_id) and a conversation resumes after a restart, with any model.
"""

from __future__ import annotations

import json
from typing import Any

from agents import TResponseInputItem
from chatkit.agents import ThreadItemConverter
from chatkit.store import Store
from chatkit.types import (
    AssistantMessageItem,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTagContent,
    WidgetItem,
)
from openai.types.responses import EasyInputMessageParam, ResponseInputTextParam
from openai.types.responses.response_input_item_param import Message

from agent.context import ChatContext

_PAGE = 50
_MAX_ITEMS = 400  # bounds the work per turn however long a thread grows


class HistoryConverter(ThreadItemConverter):
    """ChatKit's converter, made to work with every model API and with Doable's widgets."""

    async def assistant_message_to_input(self, item: AssistantMessageItem) -> TResponseInputItem | None:
        # ChatKit replays answers as `output_text` parts, which the Agents SDK cannot turn into
        # Chat Completions messages ("Unknown content"); plain text works for both APIs.
        text = "".join(part.text for part in item.content)
        return EasyInputMessageParam(type="message", role="assistant", content=text) if text else None

    async def tag_to_message_content(self, tag: UserMessageTagContent) -> ResponseInputTextParam:
        return ResponseInputTextParam(type="input_text", text=f"@{tag.text}")

    async def widget_to_input(self, item: WidgetItem) -> TResponseInputItem | list[TResponseInputItem] | None:
        # The task list as text (with ids) instead of the widget's JSON: fewer tokens, same facts.
        text = item.copy_text or item.widget.model_dump_json(exclude_none=True)
        return Message(
            type="message",
            role="user",
            content=[ResponseInputTextParam(type="input_text", text=f"(A task list was shown to the user:\n{text})")],
        )


def estimate_tokens(items: list[TResponseInputItem]) -> int:
    """A cheap, model-agnostic estimate (~3 characters a token, JSON included): errs on the high side."""
    return sum(len(json.dumps(item, ensure_ascii=False, default=str)) // 3 + 4 for item in items)


def _role(item: Any) -> str | None:
    return item.get("role") if isinstance(item, dict) else None


async def history_input(
    store: Store[ChatContext], thread: ThreadMetadata, context: ChatContext, *, budget_tokens: int
) -> list[TResponseInputItem]:
    """The newest items of `thread` that fit in `budget_tokens` (the newest always does)."""
    converter = HistoryConverter()
    kept: list[list[TResponseInputItem]] = []
    used = 0
    seen = 0
    after: str | None = None
    while seen < _MAX_ITEMS:
        page = await store.load_thread_items(thread.id, after, _PAGE, "desc", context)
        for item in page.data:
            seen += 1
            converted = await converter.to_agent_input([_older(item) if kept else item])
            cost = estimate_tokens(converted)
            if kept and used + cost > budget_tokens:
                return _start_with_user(kept)
            kept.append(converted)
            used += cost
        if not page.has_more or page.after is None:
            break
        after = page.after
    return _start_with_user(kept)


def _older(item: ThreadItem) -> ThreadItem:
    # A quote only matters for the message it came with, not when replaying history.
    if isinstance(item, UserMessageItem) and item.quoted_text:
        return item.model_copy(update={"quoted_text": None})
    return item


def _start_with_user(newest_first: list[list[TResponseInputItem]]) -> list[TResponseInputItem]:
    """Oldest first, without leading assistant turns (some Chat Completions servers reject them)."""
    flat = [entry for group in reversed(newest_first) for entry in group]
    while flat and _role(flat[0]) == "assistant":
        flat.pop(0)
    return flat
