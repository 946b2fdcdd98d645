"""Delivery bookkeeping: processed-message records (idempotent consumers) and dead letters."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.transactions import transaction, upsert
from doable.adapters.sql.worker_schema import DeadLetterRow, ProcessedMessageRow
from doable.domain.query import micros

processed_t = table_of(ProcessedMessageRow)
dead_t = table_of(DeadLetterRow)


class SqlProcessedMessages:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def seen(self, consumer: str, message_id: str) -> bool:
        stmt = sa.select(sa.literal(1)).where(
            processed_t.c.consumer == consumer, processed_t.c.message_id == message_id
        )
        async with transaction(self._engine, write=False) as conn:
            return (await conn.execute(stmt)).first() is not None

    async def remember(self, consumer: str, message_id: str, at: datetime) -> None:
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, processed_t).values(consumer=consumer, message_id=message_id, processed_us=micros(at))
            await conn.execute(stmt.on_conflict_do_nothing())

    async def seen_many(self, consumer: str, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        stmt = sa.select(processed_t.c.message_id).where(
            processed_t.c.consumer == consumer, processed_t.c.message_id.in_(list(set(message_ids)))
        )
        async with transaction(self._engine, write=False) as conn:
            return set((await conn.execute(stmt)).scalars())

    async def remember_many(self, consumer: str, message_ids: list[str], at: datetime) -> None:
        rows = [{"consumer": consumer, "message_id": m, "processed_us": micros(at)} for m in dict.fromkeys(message_ids)]
        if not rows:
            return
        async with transaction(self._engine) as conn:
            await conn.execute(upsert(conn, processed_t).on_conflict_do_nothing(), rows)  # executemany

    async def prune(self, before: datetime) -> int:
        async with transaction(self._engine) as conn:
            result = await conn.execute(sa.delete(processed_t).where(processed_t.c.processed_us < micros(before)))
            return int(result.rowcount or 0)


class SqlDeadLetters:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(
        self,
        *,
        subscription: str,
        topic: str,
        message_id: str,
        key: str,
        data: dict[str, object],
        reason: str,
        attempts: int,
        at: datetime,
    ) -> bool:
        subscription, message_id = subscription[:64], message_id[:200]  # the columns' widths
        already = sa.select(sa.literal(1)).where(
            dead_t.c.subscription == subscription, dead_t.c.message_id == message_id
        )
        async with transaction(self._engine) as conn:
            # A redelivered dead letter is recorded once (the table has no unique key to lean on).
            if (await conn.execute(already)).first() is not None:
                return False
            await conn.execute(
                sa.insert(dead_t).values(
                    subscription=subscription,
                    topic=topic[:64],
                    message_id=message_id,
                    key=key[:128],
                    payload=json.dumps(data, default=str),
                    reason=reason[:2000],
                    attempts=attempts,
                    created_us=micros(at),
                )
            )
            return True

    async def count(self) -> int:
        async with transaction(self._engine, write=False) as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(dead_t))).scalar_one())
