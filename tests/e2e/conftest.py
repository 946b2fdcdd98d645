"""MCP clients for the end-to-end tests: the SDK's own client over streamable HTTP (in-process ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

McpConnect = Callable[[str], AbstractAsyncContextManager[Client]]


@pytest.fixture
def mcp_as(app: Any, token_for: Callable[..., str]) -> McpConnect:
    """`async with mcp_as("alice") as client:` an MCP client authenticated as alice, over HTTP."""

    @asynccontextmanager
    async def connect(user: str, token: str | None = None) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token or token_for(user)}"}
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000", headers=headers
        ) as http:
            async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
                yield client

    return connect  # type: ignore[return-value]
