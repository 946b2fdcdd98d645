"""The migrations of the task tables run on databases that already hold tasks: 0007 (SQLite: drop
the unused FTS5 table and triggers) and 0008 (the JSON to task_data; PostgreSQL: tasks and
task_data hash-partitioned by user). Rows written before must read the same after, new writes
must work, and each migration goes down again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.sql.engine import alembic_config, create_engine
from doable.adapters.sql.repository import SqlUnitOfWorkFactory, _data_values, _row_values
from doable.domain.query import SortField, TaskFilter, TaskQuery
from doable.domain.task import Priority, Task
from tests.conftest import PG_DSN

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def _to(engine: AsyncEngine, revision: str, *, down: bool = False) -> None:
    step = command.downgrade if down else command.upgrade
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: step(alembic_config(sync), revision))


def _tasks(users: dict[str, int]) -> list[Task]:
    out = []
    for user, n in users.items():
        for i in range(1, n + 1):
            out.append(
                Task(
                    user_id=user,
                    task_id=i,
                    title=f"Call {user} {i}" if i % 3 == 0 else f"Write {user} {i}",
                    description="about the boiler" if i % 4 == 0 else "",
                    priority=list(Priority)[i % 4],
                    tags=("work",) if i % 2 else (),
                    due_at=NOW + timedelta(hours=i) if i % 5 else None,
                    created_at=NOW + timedelta(minutes=i),
                    updated_at=NOW + timedelta(minutes=i),
                )
            )
    return out


async def _insert_old_layout(engine: AsyncEngine, tasks: list[Task]) -> None:
    """Rows as the schema before 0008 held them: the JSON in tasks.data."""
    async with engine.begin() as conn:
        for task in tasks:
            values: dict[str, Any] = {**_row_values(task), "data": _data_values(task)["data"]}
            columns = ", ".join(values)
            pk = (
                await conn.execute(
                    sa.text(
                        f"INSERT INTO tasks ({columns}) VALUES ({', '.join(':' + c for c in values)}) RETURNING pk"
                    ),
                    values,
                )
            ).scalar_one()
            for tag in task.tags:
                await conn.execute(
                    sa.text("INSERT INTO task_tags (task_pk, tag, user_id) VALUES (:pk, :tag, :u)"),
                    {"pk": pk, "tag": tag, "u": task.user_id},
                )
        for user in {t.user_id for t in tasks}:
            last = max(t.task_id for t in tasks if t.user_id == user)
            await conn.execute(
                sa.text("INSERT INTO user_counters (user_id, last_task_id) VALUES (:u, :n)"), {"u": user, "n": last}
            )


async def _reads_as_written(engine: AsyncEngine, tasks: list[Task]) -> None:
    uow = SqlUnitOfWorkFactory(engine)
    async with uow(write=False) as u:
        for task in tasks:
            assert await u.tasks.get(task.user_id, task.task_id) == task
        for user in {t.user_id for t in tasks}:
            mine = [t for t in tasks if t.user_id == user]
            query = TaskQuery(filter=TaskFilter(keyword="call", tags_any=("work",)), sort=SortField.DUE, limit=3)
            expected, total = query.apply(mine)
            page = await u.tasks.list(user, query)
            assert (page.tasks, page.total) == (expected, total)


async def _writes_work(engine: AsyncEngine, user: str) -> None:
    uow = SqlUnitOfWorkFactory(engine)
    async with uow() as u:
        task_id = await u.tasks.next_id(user)
        new = Task(
            user_id=user, task_id=task_id, title="After the migration", tags=("home",), created_at=NOW, updated_at=NOW
        )
        await u.tasks.add(new)
        old = await u.tasks.get(user, 1)
        assert old is not None
        await u.tasks.update(old.evolve(title="Changed after the migration"))
        gone = await u.tasks.get(user, 2)
        assert gone is not None
        await u.tasks.remove(gone)
        await u.commit()
    async with uow(write=False) as u:
        assert await u.tasks.get(user, task_id) == new
        changed = await u.tasks.get(user, 1)
        assert changed is not None and changed.title == "Changed after the migration"
        assert await u.tasks.get(user, 2) is None
        page = await u.tasks.list(user, TaskQuery(filter=TaskFilter(keyword="after the migration"), limit=10))
        assert {t.task_id for t in page.tasks} == {1, task_id}


async def _count(engine: AsyncEngine, sql: str, **params: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text(sql), params)).scalar_one())


async def test_sqlite_upgrade_drops_the_fts_table_and_moves_the_json(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await _to(engine, "0006")
        tasks = _tasks({"alice": 12, "bob": 5})
        await _insert_old_layout(engine, tasks)
        fts = "SELECT count(*) FROM sqlite_master WHERE name = 'task_search' OR name LIKE 'tasks_search_a%'"
        assert await _count(engine, fts) == 4
        await _to(engine, "head")
        assert await _count(engine, fts) == 0
        assert await _count(engine, "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'data'") == 0
        assert await _count(engine, "SELECT count(*) FROM task_data") == len(tasks)
        await _reads_as_written(engine, tasks)
        await _writes_work(engine, "alice")
        # The task_data row and the tags go with the task.
        assert await _count(engine, "SELECT count(*) FROM task_data WHERE user_id = 'alice'") == 12
        await _to(engine, "0006", down=True)
        assert await _count(engine, fts) == 4
        hits = "SELECT count(*) FROM task_search WHERE task_search MATCH '\"boiler\"'"
        assert await _count(engine, hits) == 3 + 1  # alice 4, 8, 12; bob 4
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_upgrade_partitions_by_user_and_keeps_every_row(pg_schema: str) -> None:
    engine = create_engine(PG_DSN, schema=pg_schema)
    try:
        await _to(engine, "0007")
        tasks = _tasks({"alice": 40, "bob": 7, "carol": 3})
        await _insert_old_layout(engine, tasks)
        tags = await _count(engine, "SELECT count(*) FROM task_tags")
        await _to(engine, "head")
        kinds = (
            "SELECT count(*) FROM pg_class WHERE relnamespace = CAST(:s AS regnamespace) "
            "AND relkind = 'p' AND relname IN ('tasks', 'task_data')"
        )
        assert await _count(engine, kinds, s=pg_schema) == 2
        parts = "SELECT count(*) FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)"
        assert await _count(engine, parts, t=f"{pg_schema}.tasks") == 32
        assert await _count(engine, "SELECT count(*) FROM tasks") == len(tasks)
        assert await _count(engine, "SELECT count(*) FROM task_data") == len(tasks)
        assert await _count(engine, "SELECT count(*) FROM task_tags") == tags
        await _reads_as_written(engine, tasks)
        await _writes_work(engine, "alice")
        # New rows continue the pk sequence; a removed task takes its data and tags with it.
        assert await _count(engine, "SELECT max(pk) FROM tasks") == len(tasks) + 1
        assert await _count(engine, "SELECT count(*) FROM task_data WHERE user_id = 'alice'") == 40
        removed = "SELECT count(*) FROM task_tags g WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.pk = g.task_pk)"
        assert await _count(engine, removed) == 0
        await _to(engine, "0007", down=True)
        assert await _count(engine, kinds, s=pg_schema) == 0
        assert await _count(engine, "SELECT count(*) FROM tasks WHERE data LIKE '%Changed after%'") == 1
        await _to(engine, "head")
        await _writes_work(engine, "bob")
    finally:
        await engine.dispose()
