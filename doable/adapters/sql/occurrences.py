"""Per-occurrence history and action tokens in SQL, written in the caller's transaction."""

from __future__ import annotations

import builtins
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from doable.adapters.sql.transactions import SqlConnection
from doable.domain.errors import Conflict
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.query import micros
from doable.ports import ActionToken

_metadata = sa.MetaData()
records_t = sa.Table(
    "occurrence_records",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("series_id", sa.String(200), nullable=False),
    sa.Column("due_us", sa.BigInteger, nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
tokens_t = sa.Table(
    "action_tokens",
    _metadata,
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
# Every write prunes and adds a token (its undo): built once (see task_statements).
_PRUNE_TOKENS = sa.delete(tokens_t).where(
    tokens_t.c.user_id == sa.bindparam("user_id"), tokens_t.c.expires_us < sa.bindparam("now")
)
_INSERT_TOKEN = sa.insert(tokens_t)


def _instant(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class SqlOccurrenceLog:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def add(self, records: list[OccurrenceRecord]) -> None:
        if records:
            await self._conn.execute(
                sa.insert(records_t),
                [
                    {
                        "id": r.id,
                        "user_id": r.user_id,
                        "series_id": r.series_id,
                        "due_us": micros(r.due_at),
                        "at_us": micros(r.at),
                        "data": r.model_dump_json(),
                    }
                    for r in records
                ],
            )

    async def list(self, user_id: str, series_id: str, limit: int = 50) -> list[OccurrenceRecord]:
        stmt = (
            sa.select(records_t.c.data)
            .where(records_t.c.user_id == user_id, records_t.c.series_id == series_id)
            .order_by(records_t.c.due_us.desc(), records_t.c.at_us.desc(), records_t.c.id)
            .limit(limit)
        )
        return [OccurrenceRecord.model_validate_json(d) for d in (await self._conn.execute(stmt)).scalars()]

    # builtins.list: below `def list` the class body's own method shadows the builtin.
    async def remove(self, user_id: str, series_id: str, ids: builtins.list[str]) -> None:
        if ids:
            await self._conn.execute(
                sa.delete(records_t).where(
                    records_t.c.user_id == user_id, records_t.c.series_id == series_id, records_t.c.id.in_(ids)
                )
            )


class SqlActionTokens:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str, token: str) -> ActionToken | None:
        stmt = sa.select(tokens_t).where(tokens_t.c.user_id == user_id, tokens_t.c.token == token)
        row = (await self._conn.execute(stmt)).one_or_none()
        if row is None:
            return None
        return ActionToken(
            user_id=row.user_id,
            token=row.token,
            kind=row.kind,
            created_at=_instant(row.created_us),
            expires_at=_instant(row.expires_us),
            data=json.loads(row.data),
        )

    async def put(self, token: ActionToken) -> None:
        # Expired tokens of this user go as new ones come (bounded by the user's own write rate).
        await self._conn.execute(_PRUNE_TOKENS, {"user_id": token.user_id, "now": micros(token.created_at)})
        try:
            await self._conn.execute(
                _INSERT_TOKEN,
                {
                    "user_id": token.user_id,
                    "token": token.token,
                    "kind": token.kind,
                    "created_us": micros(token.created_at),
                    "expires_us": micros(token.expires_at),
                    "data": json.dumps(token.data),
                },
            )
        except IntegrityError:
            raise Conflict("the token is already in use") from None

    async def remove(self, user_id: str, token: str) -> None:
        await self._conn.execute(sa.delete(tokens_t).where(tokens_t.c.user_id == user_id, tokens_t.c.token == token))
