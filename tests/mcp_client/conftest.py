"""Real MCP SDK clients against Doable, as people's clients connect: over streamable HTTP (the API
app in-process) and over stdio (`doable mcp` as a child process, as Claude Desktop runs it), with
or without an elicitation callback (a client that can ask its user)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from mcp import Client, StdioServerParameters, types
from mcp.client.streamable_http import streamable_http_client

from tests.servers import clean_env

Answer = Literal["accept", "decline", "cancel"]
Connect = Callable[..., AbstractAsyncContextManager[Client]]


class Person:
    """The user behind an elicitation-capable client: answers each question as told, and keeps
    what they were asked."""

    def __init__(self, answer: Answer = "accept") -> None:
        self.answer: Answer = answer
        self.questions: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params.message)
        return types.ElicitResult(action=self.answer, content={} if self.answer == "accept" else None)


def stdio_params(data_dir: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "doable.cli", "mcp"], env=clean_env(data_dir, **env)
    )


@pytest.fixture
def over_http(app: Any, token_for: Callable[..., str]) -> Connect:
    """`async with over_http("alice", person=Person(), mode="auto") as client:` /mcp as alice."""

    @asynccontextmanager
    async def connect(user: str, *, person: Person | None = None, mode: str = "auto") -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token_for(user)}"}
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000", headers=headers
        ) as http:
            transport = streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)
            async with Client(transport, elicitation_callback=person, mode=mode) as client:  # type: ignore[arg-type]
                yield client

    return connect


@pytest.fixture
def over_stdio(tmp_path: Path) -> Connect:
    """`async with over_stdio(person=Person()) as client:` `doable mcp` for the local user."""

    @asynccontextmanager
    async def connect(*, person: Person | None = None, mode: str = "auto", **env: str) -> AsyncIterator[Client]:
        params = stdio_params(tmp_path / "data", **env)
        async with Client(params, elicitation_callback=person, mode=mode) as client:  # type: ignore[arg-type]
            yield client

    return connect


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content
