"""The SQL unit of work and its repositories."""

from __future__ import annotations

import builtins
import contextlib
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from doable.adapters.sql import sqlite_driver
from doable.adapters.sql import task_statements as q
from doable.adapters.sql.idempotency import SqlIdempotencyKeys
from doable.adapters.sql.occurrences import SqlActionTokens, SqlOccurrenceLog
from doable.adapters.sql.series import SqlSeriesLinks
from doable.adapters.sql.task_statements import data_t, outbox_t, tags_t, tasks_t
from doable.adapters.sql.transactions import SqlConnection, begin, transaction, write_turn
from doable.domain.errors import Conflict, Unavailable
from doable.domain.events import TaskEvent
from doable.domain.filter_text import All, Atom, Expr, Not
from doable.domain.profile import Profile
from doable.domain.query import SortField, TaskFilter, TaskPage, TaskQuery, micros, no_due_sentinel, search_text
from doable.domain.task import Task
from doable.ports import OutboxRecord


def _row_values(task: Task) -> dict[str, Any]:
    return {
        "user_id": task.user_id,
        "task_id": task.task_id,
        "completed": task.completed,
        "priority_rank": task.priority.rank,
        "title_key": task.title.casefold(),
        "search_text": search_text(task.title, task.description),
        "due_us": micros(task.due_at) if task.due_at else None,
        "due_date": task.due_date.isoformat() if task.due_date else None,
        "created_us": micros(task.created_at),
        "updated_us": micros(task.updated_at),
        "series_id": task.series_id,
        "version": task.version,
    }


def _data_values(task: Task) -> dict[str, Any]:
    return {"user_id": task.user_id, "task_id": task.task_id, "data": task.model_dump_json()}


# Pairs per statement of get_many: two bind parameters each, well under SQLite's limit (32,766).
GET_MANY_CHUNK = 400


class SqlTasks:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def next_id(self, user_id: str) -> int:
        stmt = q.next_id(self._conn.dialect.name)
        return int((await self._conn.execute(stmt, {"user_id": user_id})).scalar_one())

    async def get(self, user_id: str, task_id: int) -> Task | None:
        data = (await self._conn.execute(q.TASK_DATA, {"user_id": user_id, "task_id": task_id})).scalar_one_or_none()
        return Task.model_validate_json(data) if data is not None else None

    async def get_many(self, keys: builtins.list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        found: dict[tuple[str, int], Task] = {}
        wanted = sorted(set(keys))
        for start in range(0, len(wanted), GET_MANY_CHUNK):
            rows = await self._conn.execute(q.TASKS_DATA, {"keys": wanted[start : start + GET_MANY_CHUNK]})
            for row in rows:
                user_id, task_id, data = tuple(row)
                found[(user_id, task_id)] = Task.model_validate_json(data)
        return found

    async def add(self, task: Task) -> None:
        try:
            result = await self._conn.execute(q.INSERT_TASK, _row_values(task))
        except IntegrityError:
            raise Conflict(f"task {task.task_id} already exists") from None
        pk = result.scalar_one()
        await self._conn.execute(q.INSERT_DATA, _data_values(task))
        await self._write_tags(pk, task)

    async def update(self, task: Task) -> None:
        where = {"w_user_id": task.user_id, "w_task_id": task.task_id}
        pk = (
            await self._conn.execute(q.UPDATE_TASK, _row_values(task) | where | {"w_version": task.version - 1})
        ).scalar_one_or_none()
        if pk is None:
            raise Conflict(f"task {task.task_id} was changed concurrently")
        await self._conn.execute(q.UPDATE_DATA, {"data": task.model_dump_json()} | where)
        await self._conn.execute(q.DELETE_TAGS, {"task_pk": pk})
        await self._write_tags(pk, task)

    async def remove(self, task: Task) -> None:
        key = {"user_id": task.user_id, "task_id": task.task_id}
        if (await self._conn.execute(q.DELETE_TASK, key | {"version": task.version})).rowcount != 1:
            raise Conflict(f"task {task.task_id} was changed concurrently")
        # Its task_data row goes with it (ON DELETE CASCADE); said here too, so that it never depends
        # on a connection's foreign-key setting.
        await self._conn.execute(q.DELETE_DATA, key)

    async def count(self, user_id: str) -> int:
        return int((await self._conn.execute(q.COUNT_TASKS, {"user_id": user_id})).scalar_one())

    async def _write_tags(self, pk: int, task: Task) -> None:
        if task.tags:
            await self._conn.execute(
                q.INSERT_TAGS, [{"task_pk": pk, "tag": tag, "user_id": task.user_id} for tag in task.tags]
            )

    async def list(self, user_id: str, query: TaskQuery) -> TaskPage:
        # One scan of the matching rows (keys only) serves both the total and the page; only the
        # page's rows are then read whole. With many matches the scan is the cost, and a separate
        # page query and count query paid it twice (bench/README.md, search at scale).
        if self._conn.dialect.name == "postgresql":
            # A prepared statement's generic plan estimates $user over all 32 partitions of tasks
            # (migration 0008), i.e. a few rows, and can pick nested loops that take seconds for a
            # big user; a custom plan prunes to the user's partition and uses its statistics.
            await self._conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
        key = self._sort_expr(query)
        matching = (
            sa.select(tasks_t.c.pk, key.label("k"), tasks_t.c.task_id.label("tid"))
            .where(*self._where(user_id, query))
            .cte("matching")
        )
        page = sa.select(matching.c.pk, matching.c.k, matching.c.tid)
        if query.after is not None:
            ref = sa.tuple_(sa.literal(query.after.value), sa.literal(query.after.task_id))
            pair = sa.tuple_(matching.c.k, matching.c.tid)
            page = page.where(pair < ref if query.descending else pair > ref)
        direction = sa.desc if query.descending else sa.asc
        paged = page.order_by(direction(matching.c.k), direction(matching.c.tid)).limit(query.limit).subquery("page")
        total = sa.select(sa.func.count().label("n")).select_from(matching).subquery("total")
        # Only the page's JSON, by user and task id: on PostgreSQL the user names the partition.
        whole = sa.and_(data_t.c.user_id == user_id, data_t.c.task_id == paged.c.tid)
        stmt = (
            sa.select(total.c.n, data_t.c.data)
            .select_from(total.outerjoin(paged, sa.true()).outerjoin(data_t, whole))
            .order_by(direction(paged.c.k), direction(paged.c.tid))
        )
        rows = (await self._conn.execute(stmt)).all()
        tasks = [Task.model_validate_json(r.data) for r in rows if r.data is not None]
        return TaskPage(tasks=tasks, total=int(rows[0].n) if rows else 0, next_cursor=None)

    @staticmethod
    def _sort_expr(query: TaskQuery) -> sa.ColumnElement[Any]:
        if query.sort is SortField.DUE:
            return sa.func.coalesce(tasks_t.c.due_us, no_due_sentinel(query.descending))
        return {
            SortField.PRIORITY: tasks_t.c.priority_rank,
            SortField.TITLE: tasks_t.c.title_key,
            SortField.CREATED: tasks_t.c.created_us,
            SortField.UPDATED: tasks_t.c.updated_us,
        }[query.sort]

    # builtins.list: below `def list` the class body's own method shadows the builtin.
    def _where(self, user_id: str, query: TaskQuery) -> builtins.list[sa.ColumnElement[bool]]:
        return [tasks_t.c.user_id == user_id, *self._conditions(user_id, query.filter)]

    def _expr(self, user_id: str, expr: Expr) -> sa.ColumnElement[bool]:
        if isinstance(expr, Atom):
            # SQL's NULL (no due date) would make NOT(...) unknown; the domain says plain false.
            return sa.func.coalesce(sa.and_(sa.true(), *self._conditions(user_id, expr.as_filter())), sa.false())
        if isinstance(expr, Not):
            return sa.not_(self._expr(user_id, expr.inner))
        parts = [self._expr(user_id, p) for p in expr.parts]
        return sa.and_(*parts) if isinstance(expr, All) else sa.or_(*parts)

    def _conditions(self, user_id: str, f: TaskFilter) -> builtins.list[sa.ColumnElement[bool]]:
        c = tasks_t.c
        where: list[sa.ColumnElement[bool]] = []
        if f.expr is not None:
            where.append(self._expr(user_id, f.expr))
        if f.status == "pending":
            where.append(c.completed.is_(False))
        elif f.status == "completed":
            where.append(c.completed.is_(True))
        if f.priorities:
            where.append(c.priority_rank.in_(sorted(p.rank for p in f.priorities)))
        if f.tags_any:
            where.append(
                c.pk.in_(sa.select(tags_t.c.task_pk).where(tags_t.c.user_id == user_id, tags_t.c.tag.in_(f.tags_any)))
            )
        for tag in f.tags_all:
            where.append(c.pk.in_(sa.select(tags_t.c.task_pk).where(tags_t.c.user_id == user_id, tags_t.c.tag == tag)))
        if f.has_due is True:
            where.append(c.due_us.is_not(None))
        elif f.has_due is False:
            where.append(c.due_us.is_(None))
        # An all-day task is compared by its local date when the filter has day bounds (domain/query.py).
        if f.due_from is not None:
            if f.day_from is None:
                where.append(c.due_us >= micros(f.due_from))
            else:
                where.append(
                    sa.or_(
                        sa.and_(c.due_date.is_(None), c.due_us >= micros(f.due_from)),
                        sa.and_(c.due_date.is_not(None), c.due_date >= f.day_from.isoformat()),
                    )
                )
        if f.due_to is not None:
            if f.day_to is None:
                where.append(c.due_us < micros(f.due_to))
            else:
                where.append(
                    sa.or_(
                        sa.and_(c.due_date.is_(None), c.due_us < micros(f.due_to)),
                        sa.and_(c.due_date.is_not(None), c.due_date < f.day_to.isoformat()),
                    )
                )
        if f.overdue is not None:
            where.append(c.completed.is_(False))
            where.append(
                sa.or_(
                    sa.and_(c.due_date.is_(None), c.due_us < micros(f.overdue.now)),
                    sa.and_(c.due_date.is_not(None), c.due_date < f.overdue.today.isoformat()),
                )
            )
        if f.keyword:
            where.append(self._keyword(f.keyword))
        if f.series_id is not None:
            where.append(c.series_id == f.series_id)
        return where

    def _keyword(self, keyword: str) -> sa.ColumnElement[bool]:
        c = tasks_t.c
        if self._conn.dialect.name == "postgresql":
            escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return c.search_text.like(f"%{escaped}%", escape="\\")
        # Within one user, instr over the covering index ix_tasks_user_scan (migration 0005) is bounded
        # by that user's task count; the FTS5 trigram candidates (task_search) span every user's rows,
        # which made common words slow at scale (bench/README.md, search at scale).
        return sa.func.instr(c.search_text, keyword) > 0


class SqlProfiles:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str) -> Profile | None:
        data = (await self._conn.execute(q.PROFILE, {"user_id": user_id})).scalar_one_or_none()
        return Profile.model_validate_json(data) if data is not None else None

    async def save(self, profile: Profile) -> None:
        stmt = q.save_profile(self._conn.dialect.name)
        await self._conn.execute(stmt, {"user_id": profile.user_id, "data": profile.model_dump_json()})


class SqlOutbox:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def add(self, event: TaskEvent) -> None:
        await self._conn.execute(
            q.INSERT_OUTBOX,
            {
                "event_id": event.event_id,
                "user_id": event.user_id,
                "task_id": event.task_id,
                "created_us": micros(event.timestamp),
                "published": False,
                "attempts": 0,
                "payload": event.model_dump_json(),
            },
        )


class SqlUnitOfWork:
    """One transaction. SQLite write units take the write lock at BEGIN."""

    def __init__(self, engine: AsyncEngine, *, write: bool = True, lookup: bool = False) -> None:
        self._engine = engine
        self._write = write
        self._lookup = lookup
        self._conn: AsyncConnection | sqlite_driver.InlineConnection | None = None
        self._turn: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> Self:
        if self._write:
            # This process's writers take turns, first come first served, after the event
            # pipeline's (see write_turn).
            self._turn = write_turn(self._engine, first=False)
            await self._turn.__aenter__()
        try:
            # On the event loop's thread where SQLite allows it (sqlite_driver); lists and
            # searches, which may read many rows, yield to the loop between their statements.
            conn = await begin(self._engine, write=self._write, yielding=not (self._write or self._lookup))
        except BaseException as exc:
            await self._end_turn()
            if isinstance(exc, OperationalError | DBAPIError | OSError):
                raise Unavailable("the database is unavailable; try again shortly") from exc
            raise
        self._conn = conn
        self.tasks = SqlTasks(conn)
        self.profiles = SqlProfiles(conn)
        self.events = SqlOutbox(conn)
        self.series = SqlSeriesLinks(conn)
        self.idempotency = SqlIdempotencyKeys(conn)
        self.occurrences = SqlOccurrenceLog(conn)
        self.tokens = SqlActionTokens(conn)
        return self

    async def commit(self) -> None:
        assert self._conn is not None
        try:
            await self._conn.commit()
        except IntegrityError:
            raise Conflict("a concurrent change won; retry") from None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._conn is not None
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        finally:
            try:
                await self._conn.close()
            finally:
                await self._end_turn()
        if isinstance(exc, OperationalError | OSError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            raise Unavailable("the database is unavailable; try again shortly") from exc

    async def _end_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            await turn.__aexit__(None, None, None)


class SqlUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __call__(self, *, write: bool = True, lookup: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=write, lookup=lookup)


class SqlOutboxReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def pending(self, limit: int = 100) -> list[OutboxRecord]:
        stmt = sa.select(outbox_t).where(outbox_t.c.published.is_(False)).order_by(outbox_t.c.seq).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [
            OutboxRecord(
                seq=r["seq"],
                event=TaskEvent.model_validate_json(r["payload"]),
                created_at=datetime.fromtimestamp(r["created_us"] / 1e6, UTC),
                attempts=r["attempts"],
            )
            for r in rows
        ]

    async def mark_published(self, seqs: list[int]) -> None:
        if seqs:
            async with transaction(self._engine) as conn:
                await conn.execute(sa.update(outbox_t).where(outbox_t.c.seq.in_(seqs)).values(published=True))

    async def mark_failed(self, seqs: list[int]) -> None:
        if seqs:
            async with transaction(self._engine) as conn:
                await conn.execute(
                    sa.update(outbox_t).where(outbox_t.c.seq.in_(seqs)).values(attempts=outbox_t.c.attempts + 1)
                )

    async def depth(self) -> int:
        stmt = sa.select(sa.func.count()).select_from(outbox_t).where(outbox_t.c.published.is_(False))
        async with self._engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def history(self, user_id: str, task_id: int | None = None, limit: int = 50) -> list[TaskEvent]:
        stmt = sa.select(outbox_t.c.payload).where(outbox_t.c.user_id == user_id)
        if task_id is not None:
            stmt = stmt.where(outbox_t.c.task_id == task_id)
        stmt = stmt.order_by(outbox_t.c.seq.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).scalars().all()
        return [TaskEvent.model_validate_json(p) for p in rows]
