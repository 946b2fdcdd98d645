"""SQLite writers of one process take turns (issue 16): first come, first served, without holding
a pooled connection while they wait, and the event pipeline's short writes go before the
requests' units of work, so a reminder's writes never queue behind every request in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from doable.adapters.sql.engine import create_engine, migrate
from doable.adapters.sql.repository import SqlUnitOfWork
from doable.adapters.sql.sqlite_driver import statement_engines
from doable.adapters.sql.transactions import transaction


async def test_pipeline_writes_go_before_queued_units_of_work_and_waiters_hold_no_connection(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    await migrate(engine)
    order: list[str] = []
    try:
        holder = SqlUnitOfWork(engine)
        await holder.__aenter__()  # a request's unit of work holds the write turn

        async def unit_of_work(name: str) -> None:
            async with SqlUnitOfWork(engine) as uow:
                order.append(name)
                await uow.commit()

        async def pipeline_write(name: str) -> None:
            async with transaction(engine) as conn:
                await conn.execute(sa.text("SELECT 1"))
                order.append(name)

        waiting = [asyncio.create_task(unit_of_work(f"request-{i}")) for i in range(4)]
        await asyncio.sleep(0.05)
        waiting.append(asyncio.create_task(pipeline_write("reminder")))
        await asyncio.sleep(0.05)
        # Five writers wait, none with a connection: only the holder's is checked out.
        assert sum(e.pool.checkedout() for e in statement_engines(engine)) == 1  # type: ignore[attr-defined]
        assert order == []
        await holder.__aexit__(None, None, None)
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
    finally:
        await engine.dispose()
    # The first request was already at the write lock; the reminder's write went next, ahead of
    # the three requests queued before it; the requests kept their order.
    assert order == ["request-0", "reminder", "request-1", "request-2", "request-3"]
