"""What `doable serve` leaves out of its cold start (issue 19): Alembic when the database is already
at the newest revision, and the MCP SDK (/mcp and OAuth) until the server listens."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from doable.adapters.sql.engine import alembic_config, create_engine, head_revisions
from doable.bootstrap import Runtime
from doable.web.app import create_app
from tests.conftest import lifespan_running

ROOT = Path(__file__).resolve().parents[2]

# Runs serve's migration step in a fresh interpreter and reports whether it imported Alembic.
_MIGRATE = """
import asyncio, sys
from doable.adapters.sql.engine import create_engine, migrate

async def main():
    engine = create_engine(sys.argv[1])
    try:
        await migrate(engine)
    finally:
        await engine.dispose()

asyncio.run(main())
print("alembic" in sys.modules)
"""


def _migrate_in_subprocess(url: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", _MIGRATE, url], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip().splitlines()[-1] == "True"


async def _revisions(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars())
    finally:
        await engine.dispose()


def test_heads_read_without_alembic_are_alembics() -> None:
    assert head_revisions() == frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def test_migrate_imports_alembic_only_when_there_is_something_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'doable.db'}"
    # An empty database is migrated (with Alembic), an up-to-date one is left alone (without it).
    assert _migrate_in_subprocess(url) is True
    assert await _revisions(url) == set(head_revisions())
    assert _migrate_in_subprocess(url) is False
    # A database at an older revision is migrated again.
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "-1"))
    finally:
        await engine.dispose()
    assert await _revisions(url) != set(head_revisions())
    assert _migrate_in_subprocess(url) is True
    assert await _revisions(url) == set(head_revisions())


async def test_mcp_side_is_built_once_the_server_listens(runtime: Runtime) -> None:
    listening = asyncio.Event()
    app = create_app(runtime, deferred_until=listening)
    async with lifespan_running(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            assert (await http.get("/readyz")).status_code == 200
            # Before the server listens, /mcp waits for its build instead of failing.
            early = asyncio.create_task(http.post("/mcp", json={}))
            await asyncio.sleep(0.2)
            assert not early.done()
            listening.set()
            assert (await asyncio.wait_for(early, 30)).status_code == 401
            metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
            assert metadata.status_code == 200, metadata.text
            assert metadata.json()["resource"].endswith("/mcp")


@pytest.mark.parametrize("after", [False, True])
async def test_shutdown_before_the_mcp_side_is_built(runtime: Runtime, after: bool) -> None:
    listening = asyncio.Event()
    app = create_app(runtime, deferred_until=listening)
    async with lifespan_running(app):
        if after:
            listening.set()
        await asyncio.sleep(0)
