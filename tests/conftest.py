"""Shared fixtures: settings in a temp dir, a built runtime, the ASGI app with real HTTP clients,
tokens, and PostgreSQL schemas isolated per test."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx2
import pytest
from pydantic import SecretStr

from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.platform.auth import mint
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests import pg_cluster
from tests.pg_cluster import pytest_collection_modifyitems, pytest_unconfigure  # noqa: F401  (its hooks)

# The `chromium` and `browser` fixtures, for every folder's browser tests.
pytest_plugins = ["tests.browser"]

# The suite's PostgreSQL (tests/pg_cluster.py): DOABLE_TEST_PG if set, else a throw-away cluster this
# session starts from the installed server binaries (and exports as DOABLE_TEST_PG to child processes).
PG_DSN = pg_cluster.suite_dsn()
_pg_address = urlsplit(PG_DSN)
PG_HOST, PG_PORT = _pg_address.hostname or "127.0.0.1", _pg_address.port or 5432
JWT_SECRET = "test-secret-" + "x" * 60


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        jwt_secret=SecretStr(JWT_SECRET),
        log_format="console",
        host="127.0.0.1",
        port=8000,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await build(settings)
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture
def token_for(settings: Settings) -> Callable[..., str]:
    def make(user_id: str, *, ttl: int = 600, audience: str | None = None, issuer: str | None = None) -> str:
        return mint(
            JWT_SECRET,
            user_id=user_id,
            issuer=issuer or settings.jwt_issuer,
            audience=audience or settings.jwt_audience,
            ttl_seconds=ttl,
        )

    return make


@asynccontextmanager
async def lifespan_running(application: Any) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan in a task of its own: anyio cancel scopes (MCP's session
    manager) must be exited by the task that entered them, and fixtures tear down elsewhere."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with application.router.lifespan_context(application):
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def app(runtime: Runtime) -> AsyncIterator[Any]:
    """The API app with its lifespan running (MCP session manager started)."""
    application = create_app(runtime)
    async with lifespan_running(application):
        yield application


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client speaking to the ASGI app in-process (no port)."""
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _pg(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # In its own thread: this runs from sync fixtures that async fixtures may request mid-loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards (sync: usable from async fixtures)."""
    name = "t_" + secrets.token_hex(6)
    # pg_trgm lives in `public` once per database, so per-test schemas never own (and drop) it.
    _pg(f"CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public; CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        _pg(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def vacuum_database() -> None:
    """VACUUM the test database. This machine's PostgreSQL runs without autovacuum, so the schemas
    that tests create and drop leave their catalog rows behind, dead (216,000 in pg_attribute after
    a day of runs; pg_depend, pg_trigger and pg_inherits likewise), and every statement that opens
    a table slows down with them. A soak calls this first, so its figures do not depend on how
    many tests ran on the machine before it (the database is small: this takes ~0.1 s)."""
    _pg("VACUUM")


@pytest.fixture
def pg_url() -> str:
    return PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def pg_runtime(settings: Settings, pg_url: str, pg_schema: str) -> AsyncIterator[Runtime]:
    """A runtime on the real PostgreSQL, in a schema of its own."""
    rt = await build(settings.model_copy(update={"database_url": pg_url, "database_schema": pg_schema}))
    try:
        yield rt
    finally:
        await rt.aclose()
