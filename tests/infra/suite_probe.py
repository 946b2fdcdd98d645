"""Run by tests/infra/test_pg_cluster.py in a child pytest with no DOABLE_TEST_PG: the suite's own
fixtures must then be backed by a throw-away cluster (not collected by the suite itself: the name
does not match test_*.py)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import asyncpg

from tests.conftest import PG_DSN


async def _probe(schema: str) -> tuple[str, str]:
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": f"{schema},public"})
    try:
        await conn.execute("CREATE TABLE probe (title text)")
        await conn.execute("INSERT INTO probe VALUES ('buy milk'), ('walk the dog')")
        found = await conn.fetchval("SELECT title FROM probe WHERE title % 'buy mlk'")  # pg_trgm
        return found, await conn.fetchval("SELECT current_setting('data_directory')")
    finally:
        await conn.close()


def test_the_suite_runs_on_a_cluster_of_its_own(pg_schema: str) -> None:
    assert os.environ["DOABLE_TEST_PG"] == PG_DSN  # exported for the child processes tests start
    found, data_directory = asyncio.run(_probe(pg_schema))
    assert found == "buy milk"
    assert Path(data_directory).is_relative_to(tempfile.gettempdir())
    Path(os.environ["PROBE_REPORT"]).write_text(f"{PG_DSN}\n{data_directory}\n")
