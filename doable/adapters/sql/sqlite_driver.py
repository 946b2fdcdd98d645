"""aiosqlite connections whose event-pipeline transactions run on the event loop's thread (issue 16).

aiosqlite runs every call (each statement, each fetch) on a thread of its own and hands the
result back through the event loop, so a statement costs a full turn of the loop. SQLite has one
writer: under the soak (50 users keeping the loop busy) a transaction held the write lock for as
many turns of the loop as it had statements, mostly waiting for its turn, not working, and every
writer queued behind it.

A transaction begun with the `sqlite_inline` execution option (`transactions.transaction`: the
relay's marks, the workers' batches, the job loop) runs its statements inline, on the loop's
thread, from BEGIN to its COMMIT/ROLLBACK. A write's BEGIN IMMEDIATE is tried without a busy
wait; if a writer of another process holds the lock, it is begun on aiosqlite's thread instead,
waiting there while the loop runs on. Once begun, SQLite never waits on a lock (the transaction
holds the write lock, WAL readers never block it, and a reader waits only while another
connection recovers the WAL, which is rare), and a statement costs
microseconds, less than the thread hop did; a COMMIT may checkpoint the WAL (a sync to disk,
~0.3 ms here, once per ~1,000 pages). This process's writers take turns before BEGIN
(`transactions.write_turn`), so a connection is never used by two callers at once.

The requests' units of work (SqlUnitOfWork) stay on aiosqlite's threads. Run inline too, they
were faster (a direct add ~2x), but under the closed-loop soak the API then took more of the
loop and the event pipeline fell behind: reminders p99 1.8 s instead of 0.5 s, in back-to-back
runs (bench/README.md, issue 16 round 3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, cast

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

BUSY_TIMEOUT_MS = 30_000  # for writers of other processes (engine.py sets it on every connection)


class InlineWriteConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs its calls inline while `inline` is set."""

    inline = False

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.inline and self._running and self._connection is not None:
            return fn(*args, **kwargs)
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def async_creator(url: sa.URL) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine`: the connect arguments SQLAlchemy's dialect
    derives from `url` (path, URI mode, query options), usable from the loop's thread too."""
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(url)
    kwargs.update(timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)

    def connect() -> sqlite3.Connection:
        return cast(sqlite3.Connection, sqlite3.connect(*args, **kwargs))  # type: ignore[call-overload]

    async def create() -> InlineWriteConnection:
        conn = InlineWriteConnection(connect, 64)
        conn._thread.daemon = True  # as SQLAlchemy's own aiosqlite connect does
        await conn
        return conn

    return create


def driver_connection(conn: sa.Connection) -> InlineWriteConnection | None:
    driver = conn.connection.driver_connection
    return driver if isinstance(driver, InlineWriteConnection) else None


def begin(conn: sa.Connection, mode: str, *, inline: bool = False) -> None:
    """BEGIN on `conn`; with `inline`, the transaction runs inline to its end (a write only when
    the write lock is free at once); otherwise on aiosqlite's thread."""
    driver = driver_connection(conn)
    if driver is not None:
        if inline and mode == "IMMEDIATE":
            driver.inline = _begin_immediate_inline(driver)
            if driver.inline:
                return
        else:
            driver.inline = inline
    conn.exec_driver_sql(f"BEGIN {mode}")


def _begin_immediate_inline(driver: InlineWriteConnection) -> bool:
    # With no busy wait: a writer of another process holds the lock, and waiting for it here
    # would stop the event loop; then the caller begins on aiosqlite's thread, waiting there.
    raw = driver._conn
    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return True


def install(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        # Back to threaded calls for the next checkout (unless it begins with `sqlite_inline`);
        # the pool's reset (a ROLLBACK, a no-op after COMMIT) ran just before, inline.
        driver = getattr(dbapi_connection, "_connection", None)
        if isinstance(driver, InlineWriteConnection):
            driver.inline = False
