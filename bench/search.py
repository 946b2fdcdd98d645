"""2. Search at scale: one user with 100,000 tasks among 1,000,000 rows; keyword search + filter +
sort + first page through the real service path (TaskService.list with a ListRequest), on SQLite
and on PostgreSQL, against the hand-written SQL for the same query through the raw driver
(aiosqlite / asyncpg: the page and its total in one statement, as the service returns both)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from bench import datagen
from bench.core import Section, Timer, ratio_figure, summarize
from bench.words import WORDS
from doable.adapters.sql.engine import create_engine
from doable.adapters.sql.repository import SqlUnitOfWorkFactory
from doable.domain.clock import SystemClock
from doable.usecases.inputs import ListRequest
from doable.usecases.service import TaskService

NO_DUE_HIGH = 2**62
PAGE = 50
# Common to rare words of the generated vocabulary (earlier = more frequent).
KEYWORD_RANKS = (0, 4, 12, 30, 70, 150)


@dataclass(frozen=True)
class Query:
    shape: str
    keyword: str

    def request(self) -> ListRequest:
        if self.shape == "pending_by_due":
            return ListRequest(search=self.keyword, status="pending", sort="due", limit=PAGE)
        if self.shape == "priority":
            return ListRequest(search=self.keyword, priority=["high", "medium"], sort="priority", limit=PAGE)
        return ListRequest(search=self.keyword, tags=["work"], status="pending", sort="due", limit=PAGE)


def queries() -> list[Query]:
    return [Query(shape, WORDS[r]) for r in KEYWORD_RANKS for shape in ("pending_by_due", "priority", "tagged_by_due")]


def _key(shape: str) -> tuple[str, str]:
    """(sort expression, direction) of a shape, as the service sorts: due ascending with undated
    tasks last, priority descending; ties by task id in the same direction."""
    if shape == "priority":
        return "priority_rank", "DESC"
    return f"coalesce(due_us, {NO_DUE_HIGH})", "ASC"


def _statement(where: str, shape: str, user: str) -> str:
    """The first page and the total in one statement: one scan of the matching rows' keys, then
    only the page's JSON read (task_data, by user and task id: on PostgreSQL the user names the one
    partition that holds them). The form an expert would write by hand."""
    key, d = _key(shape)
    return (
        f"WITH m AS (SELECT {key} AS k, task_id FROM tasks WHERE {where}), "
        f"p AS (SELECT k, task_id FROM m ORDER BY k {d}, task_id {d} LIMIT {PAGE + 1}) "
        "SELECT c.total, t.data FROM (SELECT count(*) AS total FROM m) c "
        f"LEFT JOIN p ON 1 = 1 LEFT JOIN task_data t ON t.user_id = {user} AND t.task_id = p.task_id "
        f"ORDER BY p.k {d}, p.task_id {d}"
    )


def sqlite_sql(q: Query) -> tuple[str, list[Any]]:
    """Hand-written SQLite: the user's rows, substring check (instr), filters, order, total."""
    where = "user_id = ? AND instr(search_text, ?) > 0"
    params: list[Any] = [datagen.BIG_USER, q.keyword]
    if q.shape == "priority":
        where += " AND priority_rank IN (2, 3)"
    else:
        where += " AND completed = 0"
    if q.shape == "tagged_by_due":
        where += " AND pk IN (SELECT task_pk FROM task_tags WHERE user_id = ? AND tag = ?)"
        params += [datagen.BIG_USER, "work"]
    return _statement(where, q.shape, "?"), [*params, datagen.BIG_USER]


def pg_sql(q: Query) -> tuple[str, list[Any]]:
    """Hand-written PostgreSQL: trigram-indexed LIKE, filters, order, total."""
    where = "user_id = $1 AND search_text LIKE $2"
    params: list[Any] = [datagen.BIG_USER, f"%{q.keyword}%"]
    if q.shape == "priority":
        where += " AND priority_rank IN (2, 3)"
    else:
        where += " AND completed = false"
    if q.shape == "tagged_by_due":
        where += " AND pk IN (SELECT task_pk FROM task_tags WHERE user_id = $1 AND tag = $3)"
        params.append("work")
    return _statement(where, q.shape, "$1"), params


async def _measure(
    section: Section,
    store: str,
    service: TaskService,
    raw: Callable[[Query], Any],
    *,
    runs: int,
    rounds: int,
) -> None:
    qs = queries()
    # Same answers from both paths, and everything warmed up (run 0 is not reported).
    for q in qs:
        page, _ = await service.list(datagen.BIG_USER, q.request())
        raw_ids, raw_total = await raw(q)
        got = [t.task_id for t in page.tasks]
        if got != raw_ids[:PAGE] or page.total != raw_total:
            raise AssertionError(
                f"{store} {q}: service {got[:5]}.. total {page.total} != raw {raw_ids[:5]}.. {raw_total}"
            )
    section.info.setdefault("matches_per_query", {})[store] = {f"{q.shape}:{q.keyword}": None for q in qs}
    for q in qs:
        section.info["matches_per_query"][store][f"{q.shape}:{q.keyword}"] = (await raw(q))[1]
    for _ in range(runs):
        svc_t, raw_t = Timer(), Timer()
        for _ in range(rounds):
            for q in qs:
                # Alternate the two paths query by query: drift hits both alike.
                with svc_t:
                    await service.list(datagen.BIG_USER, q.request())
                with raw_t:
                    await raw(q)
        section.figure(f"{store}.service").add_run(summarize(svc_t.samples))
        section.figure(f"{store}.raw_driver").add_run(summarize(raw_t.samples))
    ratio = ratio_figure(
        section, f"{store}.ratio", section.figures[f"{store}.service"], section.figures[f"{store}.raw_driver"]
    )
    section.target(
        "2", f"search {store}: p95 (service path)", section.figures[f"{store}.service"].median("p95"), 50.0, "ms"
    )
    section.target("2", f"search {store}: service / raw driver (p95, same run)", ratio.median("p95"), 2.0, "x")


async def run_sqlite(section: Section, scale: datagen.Scale, *, runs: int, rounds: int, log: Any) -> None:
    path, info = await datagen.ensure_sqlite(scale, log)
    section.info["sqlite"] = info
    engine = create_engine(f"sqlite:///{path}")
    service = TaskService(SqlUnitOfWorkFactory(engine), SystemClock())
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")

    async def raw(q: Query) -> tuple[list[int], int]:
        sql, params = sqlite_sql(q)
        async with db.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return _ids(rows), int(rows[0][0])

    try:
        await _measure(section, "sqlite", service, raw, runs=runs, rounds=rounds)
    finally:
        await db.close()
        await engine.dispose()


def _ids(rows: Any) -> list[int]:
    # The raw path reads each row's id from its JSON (column 2; column 1 is the total).
    return [json.loads(r[1])["task_id"] for r in rows if r[1] is not None]


async def run_postgres(section: Section, scale: datagen.Scale, *, runs: int, rounds: int, log: Any) -> None:
    schema, info = await datagen.ensure_postgres(scale, log)
    section.info["postgres"] = info
    engine = create_engine(datagen.PG_DSN, schema=schema)
    service = TaskService(SqlUnitOfWorkFactory(engine), SystemClock())
    # Custom plans, as the service asks for (a generic plan misjudges a user's partition: repository.py).
    settings = {"search_path": f"{schema},public", "plan_cache_mode": "force_custom_plan"}
    conn = await asyncpg.connect(datagen.PG_DSN, server_settings=settings)

    async def raw(q: Query) -> tuple[list[int], int]:
        sql, params = pg_sql(q)
        rows = await conn.fetch(sql, *params)
        return _ids(rows), int(rows[0][0])

    try:
        await _measure(section, "postgres", service, raw, runs=runs, rounds=rounds)
    finally:
        await conn.close()
        await engine.dispose()


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    scale = datagen.QUICK if quick else datagen.FULL
    runs, rounds = 3, 2
    section.params.update(
        rows=scale.total, user_tasks=scale.big, runs=runs, queries_per_run=rounds * len(queries()), page=PAGE,
        shapes=["pending_by_due", "priority", "tagged_by_due"], keywords=[WORDS[r] for r in KEYWORD_RANKS],
    )  # fmt: skip
    t0 = time.perf_counter()
    await datagen.ensure_search_data(scale, log)  # both stores at once when neither is cached
    section.info["data_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    await run_sqlite(section, scale, runs=runs, rounds=rounds, log=log)
    section.info["sqlite_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    await run_postgres(section, scale, runs=runs, rounds=rounds, log=log)
    section.info["postgres_s"] = round(time.perf_counter() - t0, 1)
