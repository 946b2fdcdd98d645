"""Realistic task data at scale, bulk-loaded straight into the schema the migrations create.

Rows are the SQL adapter's own: each is a domain `Task` turned into column values by
`doable.adapters.sql.repository._row_values` / `_data_values`, so the stored JSON and the derived columns
(search_text, title_key, due_us, ...) are exactly what the app writes. Loading skips the
per-row ORM path: SQLite gets executemany, PostgreSQL gets COPY (indexes rebuilt after). Both are cached between
runs: SQLite under bench/.cache, PostgreSQL in a schema of its own, keyed by DATA_VERSION and
the scale, and brought to the newest migration before every run.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.words import TAGS, WORDS
from doable.adapters.sql.engine import create_engine, migrate
from doable.adapters.sql.repository import _data_values, _row_values
from doable.domain.task import Priority, Reminder, Task

DATA_VERSION = "v1"
CACHE = Path(__file__).resolve().parent / ".cache"
# The test suite exports its server (its own throw-away cluster, or the one given) as DOABLE_TEST_PG.
PG_DSN = os.environ.get("DOABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BIG_USER = "bench-big"
SEED = 20261127

TASK_COLUMNS = (
    "pk", "user_id", "task_id", "completed", "priority_rank", "title_key", "search_text", "due_us",
    "due_date", "created_us", "updated_us", "series_id", "version",
)  # fmt: skip
DATA_COLUMNS = ("user_id", "task_id", "data")
# Per batch: (tasks rows, task_data rows, task_tags rows).
Batch = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Scale:
    name: str
    total: int  # rows in tasks
    big: int  # tasks of the one measured user
    per_other: int  # tasks of every other user

    @property
    def key(self) -> str:
        return f"{DATA_VERSION}_{self.name}"


FULL = Scale("full", 1_000_000, 100_000, 100)
QUICK = Scale("quick", 100_000, 10_000, 100)

# Priorities as people use them: most tasks have none.
_PRIORITIES = [Priority.NONE] * 40 + [Priority.LOW] * 20 + [Priority.MEDIUM] * 25 + [Priority.HIGH] * 15
_START = datetime(2025, 1, 1, tzinfo=UTC)  # first task created
_DUE_FROM = datetime(2026, 1, 1, tzinfo=UTC)  # due dates spread over two years from here
_DUE_SPAN_S = 2 * 365 * 86400


def _zipf_cum_weights(n: int) -> list[float]:
    total, out = 0.0, []
    for rank in range(n):
        total += 1.0 / (rank + 8)
        out.append(total)
    return out


def owners(scale: Scale) -> list[str]:
    """Who created each row, in creation order: the big user's tasks interleave with everyone's."""
    n_others = (scale.total - scale.big) // scale.per_other
    seq = [BIG_USER] * scale.big
    for u in range(n_others):
        seq.extend([f"user-{u:05d}"] * scale.per_other)
    seq.extend([f"user-{n_others:05d}"] * (scale.total - len(seq)))
    random.Random(SEED).shuffle(seq)
    return seq


def _chunk(args: tuple[Scale, int, int, list[str], list[int]]) -> Batch:
    """The rows of one chunk, pk first_pk onwards (deterministic: seeded by the chunk number)."""
    scale, chunk_no, first_pk, users, task_ids = args
    rng = random.Random(SEED * 1000 + chunk_no)
    weights = _zipf_cum_weights(len(WORDS))
    tag_weights = _zipf_cum_weights(len(TAGS))
    step = (365 * 86400 * 1_000_000) // scale.total  # creation spread over a year, in µs
    choices, random_ = rng.choices, rng.random

    def randint(lo: int, hi: int) -> int:
        return lo + int(random_() * (hi - lo + 1))

    task_rows: list[tuple[Any, ...]] = []
    data_rows: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[Any, ...]] = []
    for offset, (user, task_id) in enumerate(zip(users, task_ids, strict=True)):
        pk = first_pk + offset
        title = " ".join(choices(WORDS, cum_weights=weights, k=randint(2, 6))).capitalize()
        description = " ".join(choices(WORDS, cum_weights=weights, k=randint(4, 18))) if random_() < 0.5 else ""
        n_tags = (0, 0, 1, 1, 1, 2, 2, 3)[randint(0, 7)]
        tags = tuple(dict.fromkeys(choices(TAGS, cum_weights=tag_weights, k=n_tags)))
        created = _START + timedelta(microseconds=(pk - 1) * step)
        due_at = due_date = None
        reminders: tuple[Reminder, ...] = ()
        if random_() < 0.7:
            if random_() < 0.15:
                due_date = date(2026, 1, 1) + timedelta(days=randint(0, 729))
                due_at = datetime(due_date.year, due_date.month, due_date.day, tzinfo=UTC)
            else:
                due_at = _DUE_FROM + timedelta(seconds=randint(0, _DUE_SPAN_S // 900) * 900)
                if random_() < 0.2:
                    reminders = (Reminder(minutes_before=(15, 30, 60, 1440)[randint(0, 3)]),)
        completed = random_() < 0.35
        updated = created + timedelta(seconds=randint(0, 30 * 86400))
        task = Task(
            user_id=user,
            task_id=task_id,
            title=title,
            description=description,
            completed=completed,
            completed_at=updated if completed else None,
            priority=_PRIORITIES[randint(0, 99)],
            tags=tags,
            due_at=due_at,
            due_date=due_date,
            reminders=reminders,
            created_at=created,
            updated_at=updated,
            version=2 if completed else 1,
        )
        v = _row_values(task)
        task_rows.append((pk, *(v[c] for c in TASK_COLUMNS[1:])))
        d = _data_values(task)
        data_rows.append(tuple(d[c] for c in DATA_COLUMNS))
        tag_rows.extend((pk, tag, user) for tag in tags)
    return task_rows, data_rows, tag_rows


def rows(scale: Scale, batch: int = 25_000, workers: int = 2) -> Iterator[Batch]:
    """Batches of (task rows, task_data rows, tag rows) in pk order, generated by `workers` processes."""
    from concurrent.futures import ProcessPoolExecutor

    seq = owners(scale)
    counters: dict[str, int] = {}
    ids = []
    for user in seq:
        counters[user] = counters.get(user, 0) + 1
        ids.append(counters[user])
    jobs = [
        (scale, n, start + 1, seq[start : start + batch], ids[start : start + batch])
        for n, start in enumerate(range(0, scale.total, batch))
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_chunk, jobs)


def last_ids(scale: Scale) -> dict[str, int]:
    counters: dict[str, int] = {}
    for user in owners(scale):
        counters[user] = counters.get(user, 0) + 1
    return counters


# ---- SQLite ------------------------------------------------------------------------------------


def sqlite_path(scale: Scale) -> Path:
    return CACHE / f"search_{scale.key}.db"


async def ensure_sqlite(scale: Scale, log: Any = print) -> tuple[Path, dict[str, Any]]:
    """The cached SQLite database for `scale` (generated on first use), at the newest migration."""
    path, _, info = await ensure_search_data(scale, log, postgres=False)
    return path, info


def _sqlite_done(scale: Scale) -> bool:
    return sqlite_path(scale).with_suffix(".done").exists()


async def _prepare_sqlite(path: Path) -> None:
    for p in (path, path.with_suffix(".db-wal"), path.with_suffix(".db-shm"), path.with_suffix(".done")):
        p.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    await migrate(engine)
    await engine.dispose()


def _load_sqlite(path: Path, scale: Scale, sink: Any = None) -> None:
    """Generate every row into SQLite; `sink(task_rows, data_rows, tag_rows)` also gets each batch (PostgreSQL)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        db.execute("BEGIN")
        placeholders = ",".join("?" * len(TASK_COLUMNS))
        for task_rows, data_rows, tag_rows in rows(scale):
            if sink is not None:
                sink(task_rows, data_rows, tag_rows)
            db.executemany(f"INSERT INTO tasks ({','.join(TASK_COLUMNS)}) VALUES ({placeholders})", task_rows)
            db.executemany(f"INSERT INTO task_data ({','.join(DATA_COLUMNS)}) VALUES (?,?,?)", data_rows)
            db.executemany("INSERT INTO task_tags (task_pk, tag, user_id) VALUES (?,?,?)", tag_rows)
        db.executemany("INSERT INTO user_counters (user_id, last_task_id) VALUES (?,?)", list(last_ids(scale).items()))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    path.with_suffix(".done").write_text(DATA_VERSION)


async def ensure_search_data(
    scale: Scale, log: Any = print, *, postgres: bool = True
) -> tuple[Path, str | None, dict[str, Any]]:
    """Both cached stores for `scale`, generated on first use: rows are generated once and go to
    SQLite (executemany, in a thread) and PostgreSQL (COPY) as they are made; each store is then
    brought to the newest migration (new indexes apply to cached data too)."""
    import asyncpg

    path, schema = sqlite_path(scale), pg_schema(scale)
    marker = f"doable-bench {scale.key} complete"
    info: dict[str, Any] = {"sqlite": {"path": str(path), "cached": _sqlite_done(scale)}}
    conn = await asyncpg.connect(PG_DSN) if postgres else None
    try:
        pg_cached = True
        if conn is not None:
            comment = await conn.fetchval(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1", schema
            )
            pg_cached = comment == marker
            info["postgres"] = {"schema": schema, "cached": pg_cached}
        t0 = time.perf_counter()
        indexes = None
        if conn is not None and not pg_cached:
            indexes = await _prepare_postgres(conn, schema)
        if not _sqlite_done(scale):
            await _prepare_sqlite(path)
            sink = None
            copies: asyncio.Queue[Any] = asyncio.Queue(maxsize=4)
            loop = asyncio.get_running_loop()
            if indexes is not None:

                def sink(task_rows: list[Any], data_rows: list[Any], tag_rows: list[Any]) -> None:
                    asyncio.run_coroutine_threadsafe(copies.put((task_rows, data_rows, tag_rows)), loop).result()

            async def copier() -> None:
                while (batch := await copies.get()) is not None:
                    await _copy_batch(conn, schema, *batch)

            consumer = asyncio.create_task(copier()) if indexes is not None else None
            try:
                await asyncio.to_thread(_load_sqlite, path, scale, sink)
            finally:
                if consumer is not None:
                    await copies.put(None)
                    await consumer
            info["sqlite"]["generated_s"] = round(time.perf_counter() - t0, 1)
            log(f"  generated {scale.total:,} rows into {path.name} in {info['sqlite']['generated_s']}s")
        elif indexes is not None:
            await _copy_from_sqlite(conn, schema, scale)
        if conn is not None and indexes is not None:
            await _finish_postgres(conn, schema, scale, indexes)
            await conn.execute(f"COMMENT ON SCHEMA {schema} IS '{marker}'")
            info["postgres"]["generated_s"] = round(time.perf_counter() - t0, 1)
            log(f"  loaded {scale.total:,} rows into PostgreSQL schema {schema} in {info['postgres']['generated_s']}s")
    finally:
        if conn is not None:
            await conn.close()
    engine = create_engine(f"sqlite:///{path}")
    await migrate(engine)
    await engine.dispose()
    if postgres:
        conn = await asyncpg.connect(PG_DSN)
        try:
            version = f"SELECT version_num FROM {schema}.alembic_version"
            before = await conn.fetchval(version)
            engine = create_engine(PG_DSN, schema=schema)
            await migrate(engine)
            await engine.dispose()
            if await conn.fetchval(version) != before:
                # As autovacuum would after the migration's rewrite (see _finish_postgres).
                for table in ("tasks", "task_data", "task_tags"):  # a partitioned table: all its partitions
                    await conn.execute(f"VACUUM (ANALYZE) {schema}.{table}")
                info["postgres"]["migrated_from"] = before
        finally:
            await conn.close()
    return path, schema if postgres else None, info


# ---- PostgreSQL --------------------------------------------------------------------------------


def pg_schema(scale: Scale) -> str:
    return f"bench_{scale.key}"


def pg_url() -> str:
    return PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)


async def ensure_postgres(scale: Scale, log: Any = print) -> tuple[str, dict[str, Any]]:
    """The PostgreSQL schema for `scale` (loaded on first use, kept between runs), at the newest migration."""
    _, schema, info = await ensure_search_data(scale, log)
    assert schema is not None
    return schema, info["postgres"]


async def _prepare_postgres(conn: Any, schema: str) -> list[Any]:
    """A fresh schema at the newest migration, its tasks/task_data/tags indexes and references
    dropped for the load (returned, to be recreated from their own definitions afterwards)."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.execute(f"CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public; CREATE SCHEMA {schema}")
    engine = create_engine(PG_DSN, schema=schema)
    await migrate(engine)
    await engine.dispose()
    indexes = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i LEFT JOIN pg_constraint c "
        "ON c.conname = i.indexname AND c.connamespace = $1::text::regnamespace "
        "WHERE i.schemaname = $1 AND i.tablename IN ('tasks', 'task_data', 'task_tags') AND c.conname IS NULL",
        schema,
    )
    # The references to tasks, as the migrations define them, put back after the load. Only the
    # partitioned tables' own: their partitions' copies (conparentid set) go and come with them.
    fks = await conn.fetch(
        "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE contype = 'f' AND connamespace = $1::text::regnamespace AND confrelid = $2::text::regclass "
        "AND conparentid = 0",
        schema,
        f"{schema}.tasks",
    )
    for fk in fks:
        await conn.execute(f"ALTER TABLE {schema}.{fk['tbl'].split('.')[-1]} DROP CONSTRAINT {fk['conname']}")
    for ix in indexes:
        await conn.execute(f"DROP INDEX {schema}.{ix['indexname']}")
    return [*indexes, *({"fk": fk} for fk in fks)]


async def _copy_batch(conn: Any, schema: str, task_rows: list[Any], data_rows: list[Any], tag_rows: list[Any]) -> None:
    await conn.copy_records_to_table("tasks", schema_name=schema, columns=list(TASK_COLUMNS), records=task_rows)
    await conn.copy_records_to_table("task_data", schema_name=schema, columns=list(DATA_COLUMNS), records=data_rows)
    await conn.copy_records_to_table(
        "task_tags", schema_name=schema, columns=["task_pk", "tag", "user_id"], records=tag_rows
    )


async def _copy_from_sqlite(conn: Any, schema: str, scale: Scale) -> None:
    """PostgreSQL only (the SQLite cache exists): its rows, read back from the SQLite cache."""
    source = sqlite3.connect(sqlite_path(scale))
    try:
        cursor = source.execute(f"SELECT {','.join(TASK_COLUMNS)} FROM tasks ORDER BY pk")
        while batch := cursor.fetchmany(50_000):
            records = [(r[0], r[1], r[2], bool(r[3]), *r[4:]) for r in batch]
            await conn.copy_records_to_table("tasks", schema_name=schema, columns=list(TASK_COLUMNS), records=records)
        cursor = source.execute(
            f"SELECT {','.join('d.' + c for c in DATA_COLUMNS)} FROM task_data d "
            "JOIN tasks t ON t.user_id = d.user_id AND t.task_id = d.task_id ORDER BY t.pk"
        )
        while batch := cursor.fetchmany(50_000):
            await conn.copy_records_to_table("task_data", schema_name=schema, columns=list(DATA_COLUMNS), records=batch)
        cursor = source.execute("SELECT task_pk, tag, user_id FROM task_tags ORDER BY task_pk")
        while batch := cursor.fetchmany(100_000):
            await conn.copy_records_to_table(
                "task_tags", schema_name=schema, columns=["task_pk", "tag", "user_id"], records=batch
            )
    finally:
        source.close()


async def _finish_postgres(conn: Any, schema: str, scale: Scale, indexes: list[Any]) -> None:
    await conn.copy_records_to_table(
        "user_counters", schema_name=schema, columns=["user_id", "last_task_id"], records=list(last_ids(scale).items())
    )
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for ix in indexes:
        if "indexdef" in ix:
            await conn.execute(ix["indexdef"])
    await conn.execute(f"SET search_path = {schema}, public")
    for ix in indexes:
        if "fk" in ix:
            fk = ix["fk"]
            await conn.execute(f"ALTER TABLE {fk['tbl'].split('.')[-1]} ADD CONSTRAINT {fk['conname']} {fk['def']}")
    await conn.execute("RESET search_path")
    await conn.execute(f"SELECT setval(pg_get_serial_sequence('{schema}.tasks', 'pk'), {scale.total})")
    # A database in use has been vacuumed by autovacuum (visibility map set, so index-only scans of
    # task_tags do not visit the heap); a bulk load has not, until this.
    for table in ("tasks", "task_data", "task_tags", "user_counters"):
        await conn.execute(f"VACUUM (ANALYZE) {schema}.{table}")
