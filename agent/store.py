"""The ChatKit Store: threads and their items, every query scoped to the requesting user.

ChatKit does no authorization of its own, so each method filters by `context.user_id`:
another user's thread is simply *not found* (404), never forbidden, so ids leak nothing.
The composition root (doable.bootstrap) picks this adapter or agent.dapr_store's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from chatkit.store import NotFoundError
from chatkit.types import Page, ThreadItem, ThreadMetadata
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from agent.context import ChatContext
from agent.thread_store import ITEM, PAGE_MAX, ThreadStore
from doable.adapters.sql.schema import metadata
from doable.adapters.sql.transactions import SqlConnection, transaction
from doable.domain.clock import Clock
from doable.domain.errors import Unavailable
from doable.domain.query import micros

threads_t = metadata.tables["chat_threads"]  # doable.adapters.sql.schema.ChatThreadRow
items_t = metadata.tables["chat_items"]  # doable.adapters.sql.schema.ChatItemRow


def _insert(conn: SqlConnection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _thread_json(thread: ThreadMetadata) -> str:
    # `respond` may hand us a full Thread (with items); only the metadata is ours to keep.
    return ThreadMetadata.model_validate(thread.model_dump(exclude={"items"})).model_dump_json()


class SqlChatStore(ThreadStore):
    """Threads and items in the `chat_threads` / `chat_items` tables (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    # ---- ids ------------------------------------------------------------------------------

    # ---- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _tx(self, *, write: bool) -> AsyncIterator[SqlConnection]:
        """One transaction (doable.adapters.sql.transactions), its outage named for the chat."""
        try:
            async with transaction(self._engine, write=write) as conn:
                yield conn
        except Unavailable as exc:
            raise Unavailable("the chat history is unavailable; try again shortly") from exc

    @staticmethod
    async def _thread_seq(conn: SqlConnection, thread_id: str, user_id: str) -> int:
        stmt = sa.select(threads_t.c.seq).where(threads_t.c.id == thread_id, threads_t.c.user_id == user_id)
        seq = (await conn.execute(stmt)).scalar_one_or_none()
        if seq is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return int(seq)

    # ---- threads --------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: ChatContext) -> ThreadMetadata:
        stmt = sa.select(threads_t.c.data).where(threads_t.c.id == thread_id, threads_t.c.user_id == context.user_id)
        async with self._tx(write=False) as conn:
            data = (await conn.execute(stmt)).scalar_one_or_none()
        if data is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return ThreadMetadata.model_validate_json(data)

    async def save_thread(self, thread: ThreadMetadata, context: ChatContext) -> None:
        now = micros(self._clock.now())
        async with self._tx(write=True) as conn:
            stmt_base = _insert(conn, threads_t).values(
                id=thread.id, user_id=context.user_id, created_us=now, updated_us=now, data=_thread_json(thread)
            )
            # The WHERE makes an id owned by someone else a no-op instead of a takeover.
            stmt = stmt_base.on_conflict_do_update(
                index_elements=[threads_t.c.id],
                set_={"data": stmt_base.excluded.data, "updated_us": stmt_base.excluded.updated_us},
                where=threads_t.c.user_id == context.user_id,
            ).returning(threads_t.c.seq)
            if (await conn.execute(stmt)).scalar_one_or_none() is None:
                raise NotFoundError(f"thread {thread.id} not found")

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: ChatContext
    ) -> Page[ThreadMetadata]:
        descending = order == "desc"
        limit = max(1, min(limit, PAGE_MAX))
        stmt = sa.select(threads_t.c.id, threads_t.c.data).where(threads_t.c.user_id == context.user_id)
        async with self._tx(write=False) as conn:
            if after is not None:
                cursor = await self._thread_seq(conn, after, context.user_id)
                stmt = stmt.where(threads_t.c.seq < cursor if descending else threads_t.c.seq > cursor)
            stmt = stmt.order_by(threads_t.c.seq.desc() if descending else threads_t.c.seq.asc()).limit(limit + 1)
            rows = (await conn.execute(stmt)).all()
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page(
            data=[ThreadMetadata.model_validate_json(r.data) for r in page],
            has_more=has_more,
            after=page[-1].id if has_more and page else None,
        )

    async def delete_thread(self, thread_id: str, context: ChatContext) -> None:
        async with self._tx(write=True) as conn:
            await self._thread_seq(conn, thread_id, context.user_id)
            await conn.execute(
                sa.delete(items_t).where(items_t.c.thread_id == thread_id, items_t.c.user_id == context.user_id)
            )
            await conn.execute(
                sa.delete(threads_t).where(threads_t.c.id == thread_id, threads_t.c.user_id == context.user_id)
            )

    # ---- items ----------------------------------------------------------------------------

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: ChatContext
    ) -> Page[ThreadItem]:
        descending = order == "desc"
        limit = max(1, min(limit, PAGE_MAX))
        mine = (items_t.c.thread_id == thread_id, items_t.c.user_id == context.user_id)
        stmt = sa.select(items_t.c.id, items_t.c.data).where(*mine)
        async with self._tx(write=False) as conn:
            await self._thread_seq(conn, thread_id, context.user_id)
            if after is not None:
                cursor = (
                    await conn.execute(sa.select(items_t.c.seq).where(*mine, items_t.c.id == after))
                ).scalar_one_or_none()
                if cursor is None:
                    raise NotFoundError(f"item {after} not found in thread {thread_id}")
                stmt = stmt.where(items_t.c.seq < cursor if descending else items_t.c.seq > cursor)
            stmt = stmt.order_by(items_t.c.seq.desc() if descending else items_t.c.seq.asc()).limit(limit + 1)
            rows = (await conn.execute(stmt)).all()
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page(
            data=[ITEM.validate_json(r.data) for r in page],
            has_more=has_more,
            after=page[-1].id if has_more and page else None,
        )

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        await self._upsert_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        await self._upsert_item(thread_id, item, context)

    async def _upsert_item(self, thread_id: str, item: ThreadItem, context: ChatContext) -> None:
        """Insert, or replace in place (keeping the item's position) when the id exists."""
        now = micros(self._clock.now())
        async with self._tx(write=True) as conn:
            await self._thread_seq(conn, thread_id, context.user_id)
            base = _insert(conn, items_t).values(
                id=item.id, thread_id=thread_id, user_id=context.user_id, created_us=now, data=item.model_dump_json()
            )
            await conn.execute(
                base.on_conflict_do_update(
                    index_elements=[items_t.c.thread_id, items_t.c.id],
                    set_={"data": base.excluded.data},
                    where=items_t.c.user_id == context.user_id,
                )
            )
            await conn.execute(
                sa.update(threads_t)
                .where(threads_t.c.id == thread_id, threads_t.c.user_id == context.user_id)
                .values(updated_us=now)
            )

    async def load_item(self, thread_id: str, item_id: str, context: ChatContext) -> ThreadItem:
        stmt = sa.select(items_t.c.data).where(
            items_t.c.thread_id == thread_id, items_t.c.id == item_id, items_t.c.user_id == context.user_id
        )
        async with self._tx(write=False) as conn:
            data = (await conn.execute(stmt)).scalar_one_or_none()
        if data is None:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
        return ITEM.validate_json(data)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: ChatContext) -> None:
        # Idempotent: ChatKit also "removes" items that were streamed but never saved.
        async with self._tx(write=True) as conn:
            await conn.execute(
                sa.delete(items_t).where(
                    items_t.c.thread_id == thread_id, items_t.c.id == item_id, items_t.c.user_id == context.user_id
                )
            )
