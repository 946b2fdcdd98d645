"""SQLite transactions on the event loop's thread (issues 16 and 19).

aiosqlite runs every call (each statement, each fetch, the cursor's close) on a thread of its own
and hands the result back through the event loop: a statement costs two thread wake-ups and a turn
of the loop, ~0.3 ms here, and SQLAlchemy's async layer adds a greenlet per statement. SQLite has
one writer, so under load a transaction held the write lock for as many turns of the loop as it had
statements, mostly waiting for its turn, not working; and an add of ~10 statements cost 5-6 ms
where the same rows as raw SQL cost 0.2 ms.

So SQLite's transactions run on a *synchronous* SQLAlchemy engine over the same file (pysqlite,
its own pool of 5 + 3 that never makes a caller wait), on the loop's thread, from BEGIN to COMMIT,
behind `InlineConnection`: the part of `AsyncConnection` the adapters use. The requests' writes,
their reads by key and the event pipeline's transactions never yield between statements; lists
and searches, which may read many rows, yield a turn of the loop after each one, so a long search
delays other requests by at most one statement. A write's BEGIN IMMEDIATE is tried without a busy
wait: if a writer of another process holds the lock, or every inline connection is in use, the
caller uses the aiosqlite engine instead and waits on its thread, so the loop never stops on a lock
or a pool. Once begun, SQLite never waits on a lock (the transaction holds the write lock, WAL
readers never block it, and a reader waits only while another connection recovers the WAL, which
is rare), and a statement costs microseconds; a COMMIT may checkpoint the WAL (a sync to disk,
~0.3 ms here, once per ~1,000 pages). This process's writers take turns before BEGIN
(`transactions.write_turn`), so a connection is never used by two callers at once."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.base import Executable

BUSY_TIMEOUT_MS = 30_000  # for writers of other processes (every connection of both engines)
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")

Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def on_connect(dbapi_connection: Any) -> None:
    """Every connection of both engines: WAL, NORMAL sync, foreign keys, the busy timeout, and
    BEGIN issued by us (pysqlite's implicit BEGIN is deferred)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in PRAGMAS:
        cursor.execute(pragma)
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


class InlineConnection:
    """What the SQL adapters use of `AsyncConnection`, over a pysqlite connection in a transaction:
    each await runs its statement on the calling thread and returns without yielding."""

    def __init__(self, conn: sa.Connection, *, yielding: bool = False) -> None:
        self.sync_connection = conn
        self._yielding = yielding

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_connection.dialect

    async def execute(self, statement: Executable, parameters: Parameters = None) -> CursorResult[Any]:
        result = self.sync_connection.execute(statement, parameters)
        if self._yielding:
            await asyncio.sleep(0)  # a turn of the loop for others between a long read's statements
        return result

    async def commit(self) -> None:
        self.sync_connection.commit()

    async def rollback(self) -> None:
        self.sync_connection.rollback()

    def in_transaction(self) -> bool:
        return self.sync_connection.in_transaction()

    async def close(self) -> None:
        self.sync_connection.close()


_inline: weakref.WeakKeyDictionary[sa.Engine, sa.Engine] = weakref.WeakKeyDictionary()


def attach(engine: AsyncEngine, url: sa.URL) -> None:
    """Give the aiosqlite `engine` its synchronous twin over the same file (disposed with it)."""
    inline = sa.create_engine(
        url.set(drivername="sqlite+pysqlite"),
        pool_size=5,
        max_overflow=3,
        # Never wait for a connection: the wait would stop the loop its holders need to finish
        # (connect() then hands the caller to the aiosqlite engine).
        pool_timeout=0,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    sa.event.listen(inline, "connect", lambda dbapi_connection, _record: on_connect(dbapi_connection))
    _inline[engine.sync_engine] = inline
    sa.event.listen(engine.sync_engine, "engine_disposed", lambda _engine: inline.dispose())


def statement_engines(engine: AsyncEngine) -> list[sa.Engine]:
    """Every engine that runs statements over `engine`'s database (its own, and its synchronous
    twin on SQLite): where a `before_cursor_execute` listener sees them all."""
    inline = _inline.get(engine.sync_engine)
    return [engine.sync_engine] if inline is None else [engine.sync_engine, inline]


def connect(engine: AsyncEngine, *, write: bool, yielding: bool = False) -> InlineConnection | None:
    """A transaction on the loop's thread over `engine`'s file (a write one holds the write lock),
    or None: not SQLite, every inline connection is in use, or (`write`) another process's writer
    holds the lock right now."""
    inline = _inline.get(engine.sync_engine)
    if inline is None:
        return None
    try:
        conn = inline.connect()
    except sa.exc.TimeoutError:
        return None  # every inline connection is in use (transactions that await other work)
    try:
        if write and not _begin_immediate_at_once(conn):
            conn.close()
            return None
        if not write:
            conn.exec_driver_sql("BEGIN DEFERRED")
    except BaseException:
        conn.close()
        raise
    return InlineConnection(conn, yielding=yielding)


def _begin_immediate_at_once(conn: sa.Connection) -> bool:
    # With no busy wait: a writer of another process holds the lock, and waiting for it here
    # would stop the event loop; then the caller begins on aiosqlite's thread, waiting there.
    # (SQLAlchemy's transaction begins with this statement; pysqlite's begin emits nothing, and
    # its commit and rollback end the transaction BEGIN started.)
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    raw.execute("PRAGMA busy_timeout=0")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return True
