"""The real processes: `doable serve` on a port, `doable mcp` over stdio, `doable token`/`migrate`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.servers import DOABLE, clean_env, serve_doable


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(data_dir, **extra)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serve_doable(tmp_path / "data") as server:
        yield server.base, tmp_path / "data"


def _token(data_dir: Path, user: str) -> str:
    out = subprocess.run([*DOABLE, "token", "--user", user, "--ttl", "10m"], env=_env(data_dir), capture_output=True, text=True, check=True)
    return out.stdout.strip()


async def test_serve_then_mcp_client_with_a_minted_token(served: tuple[str, Path]) -> None:
    base, data_dir = served
    token = _token(data_dir, "alice")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            added = await client.call_tool(
                "add_task",
                {
                    "title": "Weekly review",
                    "priority": "high",
                    "tags": ["work"],
                    "due": "2026-12-04T16:00",
                    "reminders": [{"minutes_before": 30}],
                    "recurrence": "weekly",
                },
            )
            assert not added.is_error, added.content
            found = await client.call_tool("list_tasks", {"search": "review", "sort": "due"})
            assert [t["title"] for t in found.structured_content["tasks"]] == ["Weekly review"]
            assert not (await client.call_tool("complete_task", {"task_id": 1})).is_error
            assert not (await client.call_tool("delete_task", {"task_id": 1})).is_error
    bob = _token(data_dir, "bob")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {bob}"}) as http:
        r = await http.get(f"{base}/api/tasks")
        assert r.status_code == 200 and r.json()["total"] == 0
        assert (await http.get(f"{base}/api/tasks", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_stdio_server_acts_for_the_local_user_or_the_tokens_user(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    params = StdioServerParameters(command=sys.executable, args=["-m", "doable.cli", "mcp"], env=_env(data_dir))
    async with Client(params) as client:
        added = await client.call_tool("add_task", {"title": "From Claude Desktop"})
        assert added.structured_content["task_id"] == 1
        assert (await client.call_tool("list_tasks", {"user_id": "someone-else"})).is_error
    token = _token(data_dir, "carol")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "doable.cli", "mcp"], env=_env(data_dir, DOABLE_TOKEN=token)
    )
    async with Client(params) as client:
        listed = await client.call_tool("list_tasks", {})
        assert listed.structured_content["total"] == 0  # carol does not see the local user's task
        profile = await client.call_tool("get_profile", {})
        assert profile.structured_content["user_id"] == "carol"


def test_token_command_validates_its_input(tmp_path: Path) -> None:
    bad = subprocess.run(
        [*DOABLE, "token", "--user", "alice", "--ttl", "forever"], env=_env(tmp_path), capture_output=True, text=True
    )
    assert bad.returncode != 0 and "ttl must look like" in bad.stderr
    bad_user = subprocess.run([*DOABLE, "token", "--user", "a b"], env=_env(tmp_path), capture_output=True, text=True)
    assert bad_user.returncode != 0 and "user_id" in bad_user.stderr


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        done = subprocess.run([*DOABLE, "migrate"], env=_env(tmp_path), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "doable.db").exists()
