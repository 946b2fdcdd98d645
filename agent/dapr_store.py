"""The ChatKit Store over the Dapr state store (Dapr mode): threads and items, every call scoped
to the requesting user, as `agent.store.SqlChatStore` does over SQL.

    chat-threads:{uid}        {"seq", "order": [thread ids, oldest first]}   the user's threads
    chat-thread:{thread}      {"user_id", "seq", "thread", "items": [item ids in order], "updated_us"}
    chat-item:{thread}:{item} the item (ChatKit JSON)

Thread ids are global keys (like the SQL primary key): a thread is created with first-write, so
an id can never be taken over, and another user's thread is simply not found. Every change is
an optimistic state transaction (doable.adapters.dapr.documents) guarded by the ETags it read.
"""

from __future__ import annotations

from typing import Any

from chatkit.store import NotFoundError
from chatkit.types import Page, ThreadItem, ThreadMetadata

from agent.context import ChatContext
from agent.thread_store import ITEM, PAGE_MAX, ThreadStore
from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.documents import Doc, StateTxn, optimistic, part
from doable.domain.clock import Clock
from doable.domain.query import micros


def threads_key(uid: str) -> str:
    return f"chat-threads:{part(uid)}"


def thread_key(thread_id: str) -> str:
    return f"chat-thread:{part(thread_id)}"


def item_key(thread_id: str, item_id: str) -> str:
    return f"chat-item:{part(thread_id)}:{part(item_id)}"


def _thread_value(thread: ThreadMetadata) -> dict[str, Any]:
    # `respond` may hand us a full Thread (with items); only the metadata is ours to keep.
    return ThreadMetadata.model_validate(thread.model_dump(exclude={"items"})).model_dump(mode="json")


def _page(ids: list[str], after: str | None, limit: int, missing: str) -> tuple[list[str], bool]:
    """Up to `limit` ids following the cursor `after`, and whether more follow."""
    start = 0
    if after is not None:
        if after not in ids:
            raise NotFoundError(missing)
        start = ids.index(after) + 1
    chosen = ids[start : start + limit + 1]
    return chosen[:limit], len(chosen) > limit


class DaprChatStore(ThreadStore):
    def __init__(self, client: DaprClient, store: str, clock: Clock) -> None:
        self._client = client
        self._store = store
        self._clock = clock

    async def _mine(self, txn: StateTxn, thread_id: str, context: ChatContext) -> Doc:
        doc = await txn.get(thread_key(thread_id))
        if not doc.exists or doc.value.get("user_id") != context.user_id:
            raise NotFoundError(f"thread {thread_id} not found")
        return doc

    # ---- threads ----------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: ChatContext) -> ThreadMetadata:
        doc = await self._mine(StateTxn(self._client, self._store), thread_id, context)
        return ThreadMetadata.model_validate(doc.value["thread"])

    async def save_thread(self, thread: ThreadMetadata, context: ChatContext) -> None:
        now = micros(self._clock.now())

        async def work(txn: StateTxn) -> None:
            doc = await txn.get(thread_key(thread.id))
            if doc.exists:
                if doc.value.get("user_id") != context.user_id:
                    raise NotFoundError(f"thread {thread.id} not found")
                doc.value["thread"] = _thread_value(thread)
                doc.value["updated_us"] = now
                doc.touch()
                return
            index = await txn.get(threads_key(context.user_id), {"seq": 0, "order": []})
            index.value["seq"] += 1
            index.value["order"].append(thread.id)
            index.touch()
            doc.set(
                {
                    "user_id": context.user_id,
                    "seq": index.value["seq"],
                    "thread": _thread_value(thread),
                    "items": [],
                    "updated_us": now,
                }
            )

        await optimistic(self._client, self._store, work)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: ChatContext
    ) -> Page[ThreadMetadata]:
        limit = max(1, min(limit, PAGE_MAX))
        index = await self._client.get_state(self._store, threads_key(context.user_id))
        ids = list(index.value.get("order", [])) if index is not None else []
        if order == "desc":
            ids.reverse()
        chosen, has_more = _page(ids, after, limit, f"thread {after} not found")
        found = await self._client.get_bulk(self._store, [thread_key(t) for t in chosen])
        data = [
            ThreadMetadata.model_validate(found[thread_key(t)].value["thread"])
            for t in chosen
            if thread_key(t) in found
        ]
        return Page(data=data, has_more=has_more, after=chosen[-1] if has_more and chosen else None)

    async def delete_thread(self, thread_id: str, context: ChatContext) -> None:
        async def work(txn: StateTxn) -> None:
            doc = await self._mine(txn, thread_id, context)
            for item in await txn.get_many([item_key(thread_id, i) for i in doc.value["items"]]):
                item.delete()
            doc.delete()
            index = await txn.get(threads_key(context.user_id), {"seq": 0, "order": []})
            index.value["order"] = [t for t in index.value["order"] if t != thread_id]
            index.touch()

        await optimistic(self._client, self._store, work)

    # ---- items ------------------------------------------------------------------------------

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: ChatContext
    ) -> Page[ThreadItem]:
        limit = max(1, min(limit, PAGE_MAX))
        txn = StateTxn(self._client, self._store)
        doc = await self._mine(txn, thread_id, context)
        ids = list(doc.value["items"])
        if order == "desc":
            ids.reverse()
        chosen, has_more = _page(ids, after, limit, f"item {after} not found in thread {thread_id}")
        items = await txn.get_many([item_key(thread_id, i) for i in chosen])
        data = [ITEM.validate_python(d.value) for d in items if d.exists]
        return Page(data=data, has_more=has_more, after=chosen[-1] if has_more and chosen else None)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        await self._upsert_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        await self._upsert_item(thread_id, item, context)

    async def _upsert_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        """Insert, or replace in place (keeping the item's position) when the id exists."""
        now = micros(self._clock.now())

        async def work(txn: StateTxn) -> None:
            doc = await self._mine(txn, thread_id, context)
            (await txn.get(item_key(thread_id, item.id))).set(item.model_dump(mode="json"))
            if item.id not in doc.value["items"]:
                doc.value["items"].append(item.id)
            doc.value["updated_us"] = now
            doc.touch()

        await optimistic(self._client, self._store, work)

    async def load_item(self, thread_id: str, item_id: str, context: ChatContext) -> ThreadItem:
        txn = StateTxn(self._client, self._store)
        doc = await self._mine(txn, thread_id, context)
        item = await txn.get(item_key(thread_id, item_id))
        if item_id not in doc.value["items"] or not item.exists:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
        return ITEM.validate_python(item.value)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: ChatContext) -> None:
        # Idempotent: ChatKit also "removes" items that were streamed but never saved.
        async def work(txn: StateTxn) -> None:
            try:
                doc = await self._mine(txn, thread_id, context)
            except NotFoundError:
                return
            if item_id in doc.value["items"]:
                doc.value["items"] = [i for i in doc.value["items"] if i != item_id]
                doc.touch()
            (await txn.get(item_key(thread_id, item_id))).delete()

        await optimistic(self._client, self._store, work)
