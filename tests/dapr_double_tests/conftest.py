"""Fixtures for the sidecar double's own tests: a double per test on a throw-away schema."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import PG_DSN
from tests.dapr_double import DaprDouble, ManualClock

from .recording_app import RecordingApp

DoubleFactory = Callable[..., Awaitable[DaprDouble]]


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app() -> RecordingApp:
    """The primary app (app id "api")."""
    return RecordingApp()


@pytest_asyncio.fixture
async def make_double() -> AsyncIterator[DoubleFactory]:
    """Build started doubles; each gets its own schema, dropped at teardown."""
    doubles: list[DaprDouble] = []

    async def factory(**options: Any) -> DaprDouble:
        options.setdefault("app_id", "api")
        options.setdefault("dsn", PG_DSN)
        options.setdefault("schema", f"dapr_double_{uuid.uuid4().hex[:12]}")
        options.setdefault("redelivery_backoff", 0.01)
        options.setdefault("job_retry_interval", 1.0)
        double = DaprDouble(**options)
        await double.start()
        doubles.append(double)
        return double

    yield factory
    for double in doubles:
        await double.close()


@pytest_asyncio.fixture
async def double(make_double: DoubleFactory, app: RecordingApp) -> DaprDouble:
    """A double whose primary app is the recording app."""
    return await make_double(app=app.app)
