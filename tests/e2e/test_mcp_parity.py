"""One tool registry for every MCP transport, as real MCP clients see it: `doable mcp` over stdio
and /mcp over streamable HTTP list the same tools with the same schemas, and both report
Doable's version in the handshake. Also: `doable migrate` uses the engine `serve` uses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from doable import __version__
from tests.conftest import PG_DSN
from tests.servers import DOABLE, clean_env


def _surface(tools: list[Any]) -> dict[str, Any]:
    return {t.name: {"input": t.input_schema, "description": t.description} for t in tools}


async def test_stdio_and_http_serve_the_same_tools_and_report_the_version(
    app: Any, token_for: Callable[..., str], tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=headers) as http:
        async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
            over_http = _surface((await client.list_tools()).tools)
            http_info = client.server_info

    params = StdioServerParameters(command=sys.executable, args=["-m", "doable.cli", "mcp"], env=clean_env(tmp_path / "data"))
    async with Client(params) as client:
        over_stdio = _surface((await client.list_tools()).tools)
        stdio_info = client.server_info

    assert sorted(over_stdio) == sorted(over_http)
    assert {"list_notifications", "mark_read", "task_history"} <= set(over_stdio)
    assert over_stdio == over_http
    for info in (http_info, stdio_info):
        assert info is not None and info.name == "doable" and info.version == __version__ != ""


def test_migrate_honours_the_database_schema(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    env = clean_env(tmp_path, DOABLE_DATABASE_URL=pg_url, DOABLE_DATABASE_SCHEMA=pg_schema)
    done = subprocess.run([*DOABLE, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    async def tables() -> set[str]:
        conn = await asyncpg.connect(PG_DSN)
        try:
            rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", pg_schema)
            return {r["table_name"] for r in rows}
        finally:
            await conn.close()

    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        found = pool.submit(asyncio.run, tables()).result()
    assert {"alembic_version", "tasks"} <= found, found
