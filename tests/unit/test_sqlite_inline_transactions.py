"""SQLite's transactions run on the event loop's thread (issues 16 and 19, sqlite_driver): the
event pipeline's transactions, the requests' writes and reads by key run every statement, from
BEGIN to COMMIT, on the loop's thread without yielding to it; lists and searches yield between
their statements; when the inline connections are all in use, or a writer of another process holds
the lock, the transaction runs on aiosqlite's thread, never stopping the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from doable.adapters.sql.engine import create_engine, migrate
from doable.adapters.sql.repository import SqlUnitOfWork
from doable.adapters.sql.sqlite_driver import InlineConnection
from doable.adapters.sql.transactions import transaction

INSERT = sa.text("INSERT INTO user_counters (user_id, last_task_id) VALUES (:u, 1)")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'inline.db'}")
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def _thread_of_statements(conn: InlineConnection) -> int:
    """The thread SQLite runs this connection's statements on (a function it calls back)."""
    raw = conn.sync_connection.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    raw.create_function("thread_id", 0, threading.get_ident)
    return int(raw.execute("SELECT thread_id()").fetchone()[0])


async def test_pipeline_transactions_and_write_units_of_work_run_on_the_loops_thread(engine: AsyncEngine) -> None:
    loop_thread = threading.get_ident()
    async with transaction(engine) as conn:
        assert isinstance(conn, InlineConnection)
        assert _thread_of_statements(conn) == loop_thread
        await conn.execute(INSERT, {"u": "pipeline"})
    async with transaction(engine, write=False) as conn:
        assert isinstance(conn, InlineConnection)
        assert (await conn.execute(sa.text("SELECT count(*) FROM user_counters"))).scalar_one() == 1
    async with SqlUnitOfWork(engine) as uow:
        assert isinstance(uow.tasks._conn, InlineConnection)
        assert _thread_of_statements(uow.tasks._conn) == loop_thread
        await uow.tasks._conn.execute(INSERT, {"u": "request"})
        await uow.commit()
    async with SqlUnitOfWork(engine, write=False) as uow:
        assert isinstance(uow.tasks._conn, InlineConnection)
        rows = await uow.tasks._conn.execute(sa.text("SELECT user_id FROM user_counters ORDER BY user_id"))
        assert rows.scalars().all() == ["pipeline", "request"]


async def test_a_long_read_lets_the_loop_run_between_its_statements(engine: AsyncEngine) -> None:
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with SqlUnitOfWork(engine, write=False) as uow:
        waiting = asyncio.create_task(other())
        await uow.tasks._conn.execute(sa.text("SELECT 1"))
        assert ran == ["other"]  # a list or a search yields after each statement
    await waiting
    async with SqlUnitOfWork(engine, write=False, lookup=True) as uow:
        waiting = asyncio.create_task(other())
        await uow.tasks._conn.execute(sa.text("SELECT 1"))
        assert ran == ["other"]  # a read by key runs to its end
    await waiting


async def test_more_open_transactions_than_inline_connections_never_stop_the_loop(engine: AsyncEngine) -> None:
    """Transactions that await other work keep their connection meanwhile; once the inline pool
    is used up, the next ones run on aiosqlite's thread instead of waiting for one on the loop
    (which the holders would need to release theirs: a deadlock until the pool's timeout)."""
    release, all_open = asyncio.Event(), asyncio.Event()
    kinds: list[type] = []

    async def reader() -> None:
        async with transaction(engine, write=False) as conn:
            kinds.append(type(conn))
            if len(kinds) == 12:
                all_open.set()
            await conn.execute(sa.text("SELECT 1"))
            await release.wait()

    readers = [asyncio.create_task(reader()) for _ in range(12)]
    async with asyncio.timeout(5):
        await all_open.wait()
    release.set()
    await asyncio.gather(*readers)
    assert kinds.count(InlineConnection) == 8  # the inline pool: 5 + 3
    assert kinds.count(AsyncConnection) == 4


async def test_an_inline_transaction_that_fails_changes_nothing(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with transaction(engine) as conn:
            await conn.execute(INSERT, {"u": "pipeline"})
            raise RuntimeError("the batch failed")
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks._conn.execute(INSERT, {"u": "request"})  # not committed
    async with transaction(engine, write=False) as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM user_counters"))).scalar_one() == 0


async def _pipeline_write(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        await conn.execute(INSERT, {"u": "pipeline"})


async def _unit_of_work_write(engine: AsyncEngine) -> None:
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks._conn.execute(INSERT, {"u": "request"})
        await uow.commit()


@pytest.mark.parametrize("write", [_pipeline_write, _unit_of_work_write], ids=["pipeline", "unit_of_work"])
async def test_a_writer_of_another_process_is_waited_for_off_the_loop(
    tmp_path: Path, write: Callable[[AsyncEngine], Any]
) -> None:
    path = tmp_path / "other.db"
    engine = create_engine(f"sqlite:///{path}")
    await migrate(engine)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock, as another process would
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async def release() -> None:
            await asyncio.sleep(0.3)
            other.execute("COMMIT")

        ticking = asyncio.create_task(tick())
        releasing = asyncio.create_task(release())
        await write(engine)
        await releasing
        ticking.cancel()
        assert ticks >= 10, ticks  # the loop ran while the write waited for the lock
        async with transaction(engine, write=False) as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM user_counters"))).scalar_one() == 1
    finally:
        other.close()
        await engine.dispose()
