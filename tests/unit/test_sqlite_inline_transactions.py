"""The event pipeline's SQLite transactions run on the event loop's thread (issue 16, sqlite_driver):
from BEGIN to their end, no statement takes a turn of the loop; the requests' units of work and
plain reads stay on aiosqlite's thread; and a writer of another process makes BEGIN IMMEDIATE wait
on that thread, never stopping the loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from doable.adapters.sql.engine import create_engine, migrate
from doable.adapters.sql.repository import SqlUnitOfWork
from doable.adapters.sql.sqlite_driver import InlineWriteConnection
from doable.adapters.sql.transactions import transaction

INSERT = sa.text("INSERT INTO user_counters (user_id, last_task_id) VALUES (:u, 1)")


def _driver(conn: sa.Connection) -> InlineWriteConnection:
    driver = conn.connection.driver_connection
    assert isinstance(driver, InlineWriteConnection)
    return driver


async def test_pipeline_transactions_run_inline_and_units_of_work_do_not(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'inline.db'}")
    await migrate(engine)
    try:
        async with transaction(engine) as conn:
            driver = _driver(conn.sync_connection)  # type: ignore[arg-type]
            assert driver.inline
            await conn.execute(INSERT, {"u": "pipeline"})
        assert not driver.inline  # back to threaded calls once the connection is returned
        async with transaction(engine, write=False) as conn:
            assert _driver(conn.sync_connection).inline  # type: ignore[arg-type]
            assert (await conn.execute(sa.text("SELECT count(*) FROM user_counters"))).scalar_one() == 1
        async with SqlUnitOfWork(engine) as uow:
            assert not _driver(uow.tasks._conn.sync_connection).inline  # type: ignore[arg-type]
            await uow.tasks._conn.execute(INSERT, {"u": "request"})
            await uow.commit()
        async with engine.connect() as conn:
            assert not _driver(conn.sync_connection).inline  # type: ignore[arg-type]
            rows = await conn.execute(sa.text("SELECT user_id FROM user_counters ORDER BY user_id"))
            assert rows.scalars().all() == ["pipeline", "request"]
    finally:
        await engine.dispose()


async def test_a_writer_of_another_process_is_waited_for_off_the_loop(tmp_path: Path) -> None:
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
        async with transaction(engine) as conn:
            await conn.execute(INSERT, {"u": "pipeline"})
        await releasing
        ticking.cancel()
        assert ticks >= 10, ticks  # the loop ran while the write waited for the lock
    finally:
        other.close()
        await engine.dispose()
