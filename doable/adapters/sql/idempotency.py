"""Idempotency keys in SQL: one row per (user, key), written in the caller's transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from doable.adapters.sql.transactions import SqlConnection
from doable.domain.errors import Conflict
from doable.domain.query import micros
from doable.ports import StoredResult

keys_t = sa.Table(
    "idempotency_keys",
    sa.MetaData(),
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
)
# Built once: a keyed write reads and writes its key (see task_statements).
_GET = sa.select(keys_t.c.request_hash, keys_t.c.created_us, keys_t.c.result).where(
    keys_t.c.user_id == sa.bindparam("user_id"), keys_t.c.key == sa.bindparam("key")
)
_PUT = sa.insert(keys_t)


class SqlIdempotencyKeys:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str, key: str) -> StoredResult | None:
        row = (await self._conn.execute(_GET, {"user_id": user_id, "key": key})).one_or_none()
        if row is None:
            return None
        created = datetime.fromtimestamp(row.created_us / 1_000_000, UTC)
        return StoredResult(request_hash=row.request_hash, created_at=created, result=json.loads(row.result))

    async def put(self, user_id: str, key: str, stored: StoredResult) -> None:
        try:
            await self._conn.execute(
                _PUT,
                {
                    "user_id": user_id,
                    "key": key,
                    "request_hash": stored.request_hash,
                    "created_us": micros(stored.created_at),
                    "result": json.dumps(stored.result),
                },
            )
        except IntegrityError:
            raise Conflict("the same idempotency key is in use by a concurrent call") from None

    async def forget(self, user_id: str, key: str) -> None:
        await self._conn.execute(sa.delete(keys_t).where(keys_t.c.user_id == user_id, keys_t.c.key == key))
