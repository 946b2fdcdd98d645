"""Short transactions for the worker-side SQL adapters (the task service uses SqlUnitOfWork)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable

from doable.adapters.sql import sqlite_driver
from doable.domain.errors import Unavailable


class SqlConnection(Protocol):
    """What the SQL adapters use of a connection in a transaction: an `AsyncConnection`, or on
    SQLite an `sqlite_driver.InlineConnection`."""

    @property
    def dialect(self) -> sa.Dialect: ...

    async def execute(
        self, statement: Executable, parameters: sqlite_driver.Parameters = None
    ) -> CursorResult[Any]: ...


# SQLite has one writer at a time. Its busy handler makes the others sleep and poll (1 ms up to
# 100 ms a try), so under load a writer may wait seconds while later ones get in, holding a pooled
# connection all the while. This process's writers therefore queue first for their turn, without a
# connection, on first-come first-served locks (asyncio.Lock); the busy timeout is left for writers
# of other processes. The event pipeline's writers (these short batch transactions: a reminder
# claimed, an inbox batch, a job settled) go before the requests' units of work: at most one of
# those waits at the write lock itself, the others behind a gate, so a reminder's few writes never
# queue behind every request in flight.
@dataclass
class _Turns:
    loop: asyncio.AbstractEventLoop
    write: asyncio.Lock = field(default_factory=asyncio.Lock)
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)  # the units of work's queue


_turns: weakref.WeakKeyDictionary[sa.Engine, _Turns] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def write_turn(engine: AsyncEngine, *, first: bool = True) -> AsyncIterator[None]:
    """Hold this process's turn to write to `engine` (SQLite; elsewhere nothing to wait for).
    `first`: the event pipeline's short writes, ahead of the units of work (`first=False`)."""
    if engine.dialect.name != "sqlite":
        yield
        return
    loop = asyncio.get_running_loop()
    turns = _turns.get(engine.sync_engine)
    if turns is None or turns.loop is not loop:
        turns = _turns[engine.sync_engine] = _Turns(loop)
    if first:
        async with turns.write:
            yield
        return
    async with turns.gate:  # one unit of work at a time joins the queue at the write lock
        await turns.write.acquire()
    try:
        yield
    finally:
        turns.write.release()


@asynccontextmanager
async def transaction(engine: AsyncEngine, *, write: bool = True) -> AsyncIterator[SqlConnection]:
    """One transaction, committed when the block ends without an error.

    Write transactions wait for their turn (`write_turn`), then take SQLite's write lock at BEGIN
    (like SqlUnitOfWork) so that a read never has to upgrade to a write. On SQLite they run on the
    event loop's thread (`sqlite_driver`). A database that cannot be reached surfaces as
    Unavailable, which handlers answer with RETRY."""
    async with write_turn(engine) if write else contextlib.nullcontext():
        async with _transaction(engine, write=write) as conn:
            yield conn


async def begin(
    engine: AsyncEngine, *, write: bool, yielding: bool = False
) -> AsyncConnection | sqlite_driver.InlineConnection:
    """A connection in a new transaction: on the event loop's thread where SQLite allows it
    (sqlite_driver; `yielding` between statements), else the async driver's. A write takes
    SQLite's write lock at BEGIN. The driver's errors are raised as they are."""
    inline = sqlite_driver.connect(engine, write=write, yielding=yielding)
    if inline is not None:
        return inline
    conn = await engine.connect()
    try:
        if write:
            conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
        await conn.begin()
    except BaseException:
        await conn.close()
        raise
    return conn


@asynccontextmanager
async def _transaction(engine: AsyncEngine, *, write: bool) -> AsyncIterator[SqlConnection]:
    try:
        conn = await begin(engine, write=write)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise Unavailable("the database is unavailable; try again shortly") from exc
    try:
        try:
            yield conn
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
    except (OperationalError, DBAPIError, OSError) as exc:
        if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError) and not exc.connection_invalidated:
            raise  # a bad statement, not an outage
        raise Unavailable("the database is unavailable; try again shortly") from exc
    finally:
        with contextlib.suppress(DBAPIError, OSError):  # closing a connection that is already gone
            await conn.close()


def upsert(conn: SqlConnection, table: sa.Table) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (PostgreSQL and SQLite share the syntax)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(value: int) -> datetime:
    """Exact inverse of `micros` (float seconds would round away microseconds)."""
    return _EPOCH + timedelta(microseconds=value)


def from_micros_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)
