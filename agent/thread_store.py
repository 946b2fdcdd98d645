"""What both chat stores (SQL: agent.store, Dapr state: agent.dapr_store) share: ids, the item
codec and the page limit."""

from __future__ import annotations

import secrets

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import Attachment, ThreadItem, ThreadMetadata
from pydantic import TypeAdapter

from agent.context import ChatContext

ITEM = TypeAdapter[ThreadItem](ThreadItem)
PAGE_MAX = 100
# ChatKit's default ids carry 32 random bits; thread ids are global keys here, so use more.
_PREFIXES: dict[str, str] = {
    "message": "msg",
    "tool_call": "tc",
    "task": "tsk",
    "workflow": "wf",
    "attachment": "atc",
    "sdk_hidden_context": "shcx",
}


class ThreadStore(Store[ChatContext]):
    def generate_thread_id(self, context: ChatContext) -> str:
        return f"thr_{secrets.token_hex(12)}"

    def generate_item_id(self, item_type: StoreItemType, thread: ThreadMetadata, context: ChatContext) -> str:
        return f"{_PREFIXES.get(item_type, 'itm')}_{secrets.token_hex(8)}"

    # Attachments are not offered: the routes refuse them before they reach a store.

    async def save_attachment(self, attachment: Attachment, context: ChatContext) -> None:
        raise NotImplementedError("attachments are not supported")

    async def load_attachment(self, attachment_id: str, context: ChatContext) -> Attachment:
        raise NotFoundError(f"attachment {attachment_id} not found")

    async def delete_attachment(self, attachment_id: str, context: ChatContext) -> None:
        raise NotFoundError(f"attachment {attachment_id} not found")
