"""Engines for SQLite and PostgreSQL, and running the Alembic migrations."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from doable.adapters.sql import sqlite_driver

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def is_sqlite(url: str | sa.URL) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


def normalize_url(url: str) -> str:
    """Accept the plain URLs people paste (postgres://, postgresql://, sqlite:///) and pick the async driver."""
    parsed = sa.make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
        # libpq spells TLS as sslmode; asyncpg calls it ssl.
        if "sslmode" in parsed.query:
            query = dict(parsed.query)
            query["ssl"] = query.pop("sslmode")
            query.pop("channel_binding", None)
            parsed = parsed.set(query=query)
    if parsed.get_backend_name() == "sqlite" and parsed.get_driver_name() != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str, *, schema: str | None = None, pool_size: int = 10, timeout: float | None = None
) -> AsyncEngine:
    """An async engine. SQLite gets WAL, a busy timeout and write transactions that take
    the write lock up front (BEGIN IMMEDIATE), so concurrent writers queue instead of
    failing with "database is locked" when a read upgrades to a write.

    PostgreSQL gets `timeout` on connecting, on each statement and on waiting for a pooled
    connection: behind a network partition nothing answers or refuses, and without a bound a
    request (and every loop) would wait for TCP to give up, many minutes later."""
    url = normalize_url(url)
    if is_sqlite(url):
        path = sa.make_url(url).database
        on_disk = bool(path) and path != ":memory:"
        if on_disk:
            Path(str(path)).parent.mkdir(parents=True, exist_ok=True)
        # Few connections on purpose: the transactions run on the loop's thread over the
        # synchronous twin `sqlite_driver.attach` adds; this pool takes those that cannot (another
        # process holds the write lock, or every inline connection is in use). Tried at 5 + 15
        # under the soak: writes' p95 doubled and reminders came later.
        engine = create_async_engine(
            url,
            pool_size=5,
            max_overflow=3,
            connect_args={"timeout": sqlite_driver.BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _sqlite_pragmas(engine)
        if on_disk:  # a second connection to ":memory:" would be another database
            sqlite_driver.attach(engine, sa.make_url(url))
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["server_settings"] = {"search_path": f"{schema},public"}
    pool: dict[str, Any] = {}
    if timeout is not None:
        connect_args.update(timeout=timeout, command_timeout=timeout)
        pool["pool_timeout"] = timeout
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=connect_args, **pool
    )


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        sqlite_driver.on_connect(dbapi_connection)

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revisions() -> frozenset[str]:
    """The newest revisions, read from the migration scripts' `revision` and `down_revision`
    without Alembic: importing it is a tenth of a cold start, and most starts find nothing to do."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                name, value = node.target.id, node.value
            else:
                continue
            if name in ("revision", "down_revision"):
                found[name] = ast.literal_eval(value)
        revisions.add(found["revision"])
        down = found.get("down_revision")
        parents.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions - parents)


async def _at_head(conn: AsyncConnection) -> bool:
    """Whether the database's revisions (Alembic's version table, read with plain SQL) are the heads."""
    if not await conn.run_sync(lambda sync: sa.inspect(sync).has_table("alembic_version")):
        return False
    current = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    return frozenset(current) == head_revisions()


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent). Alembic is imported only when there
    is something to do: on an empty database or one at an older (or unknown) revision."""
    async with engine.begin() as conn:
        if await _at_head(conn):
            return
        from alembic import command

        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
