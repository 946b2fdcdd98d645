"""Short transactions for the worker-side SQL adapters (the task service uses SqlUnitOfWork)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from doable.domain.errors import Unavailable


@asynccontextmanager
async def transaction(engine: AsyncEngine, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
    """One transaction, committed when the block ends without an error.

    Write transactions take SQLite's write lock at BEGIN (like SqlUnitOfWork) so that concurrent
    writers queue on the busy timeout instead of failing when a read upgrades to a write. A
    database that cannot be reached surfaces as Unavailable, which handlers answer with RETRY."""
    try:
        conn = await engine.connect()
    except (OperationalError, DBAPIError, OSError) as exc:
        raise Unavailable("the database is unavailable; try again shortly") from exc
    try:
        if write:
            conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
        async with conn.begin():
            yield conn
    except (OperationalError, DBAPIError, OSError) as exc:
        if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError) and not exc.connection_invalidated:
            raise  # a bad statement, not an outage
        raise Unavailable("the database is unavailable; try again shortly") from exc
    finally:
        with contextlib.suppress(DBAPIError, OSError):  # closing a connection that is already gone
            await conn.close()


def upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (PostgreSQL and SQLite share the syntax)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(value: int) -> datetime:
    """Exact inverse of `micros` (float seconds would round away microseconds)."""
    return _EPOCH + timedelta(microseconds=value)


def from_micros_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)
