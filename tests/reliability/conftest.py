"""Fixtures of the reliability suites: an app whose event delivery is detached (so a request's
storage effects are exactly what the request did), and a token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from doable.bootstrap import Runtime, build
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.conftest import auth, lifespan_running
from tests.reliability.fuzz import Tried, record


@pytest.fixture
async def quiet_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime that never starts its relay and workers: nothing changes storage behind a request."""
    rt = await build(settings)
    delivery, rt.delivery = rt.delivery, None
    rt.detached_delivery = delivery  # type: ignore[attr-defined]  # tests run it by hand (settle)
    try:
        yield rt
    finally:
        await rt.aclose()
        if delivery is not None:
            await delivery.stop()


@pytest.fixture
async def quiet_app(quiet_runtime: Runtime) -> AsyncIterator[Any]:
    application = create_app(quiet_runtime)
    async with lifespan_running(application):
        yield application


@pytest.fixture
async def quiet_http(quiet_app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=quiet_app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


@pytest.fixture
def alice(token_for: Callable[..., str]) -> dict[str, str]:
    return auth(token_for("alice"))


@pytest.fixture
def tried(request: pytest.FixtureRequest) -> Iterator[Tried]:
    """Counts a test's inputs and reports them (test-artifacts/reliability.json) when it passes."""
    counter = Tried()
    yield counter
    name = f"{request.node.module.__name__.rsplit('.', 1)[-1]}::{request.node.originalname}"
    record(name, inputs=counter.total, by_outcome=counter.by_outcome)


@pytest.fixture
def connect(quiet_app: Any, token_for: Callable[..., str]) -> Callable[[], Any]:
    """`async with connect() as client:` an MCP client of alice's over streamable HTTP (in-process)."""

    @asynccontextmanager
    async def open_client() -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token_for('alice')}"}
        transport = httpx2.ASGITransport(app=quiet_app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=headers) as http:
            async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
                yield client

    return open_client
