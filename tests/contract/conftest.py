"""The repository contract runs against every storage adapter: add one here and it must pass all of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.outbox import DaprOutbox
from doable.adapters.dapr.state import DaprUnitOfWorkFactory
from doable.adapters.sql.engine import create_engine, migrate
from doable.adapters.sql.repository import SqlOutboxReader, SqlUnitOfWorkFactory
from doable.domain.clock import ManualClock
from doable.domain.events import TaskEvent
from doable.platform.topology import API_APP_ID, STATE_STORE
from doable.ports import OutboxReader, OutboxRecord, UnitOfWorkFactory
from doable.ports.messages import Outgoing
from doable.usecases.service import TaskService
from tests.conftest import PG_DSN
from tests.dapr_double import DaprDouble
from tests.dapr_double.manifests import render_chart

ADAPTERS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("dapr", marks=pytest.mark.postgres),  # Dapr state through the sidecar double (over PostgreSQL)
]


class _DaprOutboxView:
    """The contract's outbox questions, answered from the Dapr outbox keys (no relay runs here)."""

    def __init__(self, outbox: DaprOutbox) -> None:
        self._outbox = outbox

    async def history(self, user_id: str, task_id: int | None = None, limit: int = 50) -> list[TaskEvent]:
        events = [e for e in await self._outbox.pending(user_id) if task_id is None or e.task_id == task_id]
        return list(reversed(events))[:limit]

    async def pending(self, limit: int = 100) -> list[OutboxRecord]:
        events = [e for user in await self._outbox.dirty_users() for e in await self._outbox.pending(user)]
        return [OutboxRecord(seq=i, event=e, created_at=e.timestamp, attempts=0) for i, e in enumerate(events[:limit])]

    async def mark_published(self, seqs: list[int]) -> None:
        await self._outbox.drain(limit=len(seqs))

    async def depth(self) -> int:
        return len(await self.pending(10_000))


@asynccontextmanager
async def dapr_store(schema: str) -> AsyncIterator[Store]:
    # The shipped manifests: a lost optimistic race must fail fast under the chart's Resiliency.
    async with DaprDouble(app_id=API_APP_ID, dsn=PG_DSN, schema=schema, manifests=render_chart()) as double:
        client = DaprClient(transport=httpx2.ASGITransport(app=double.sidecar_app(API_APP_ID)))
        outbox = DaprOutbox(client, STATE_STORE, _NullPublisher())
        try:
            yield Store("dapr", DaprUnitOfWorkFactory(client, STATE_STORE), _DaprOutboxView(outbox))  # type: ignore[arg-type]
        finally:
            await client.aclose()


class _NullPublisher:
    async def publish(self, topic: str, data: dict[str, object], *, key: str, event_id: str, trace_id: str | None = None) -> None:
        return None

    async def publish_batch(self, topic: str, entries: Sequence[Outgoing]) -> set[str]:
        return set()


@dataclass
class Store:
    name: str
    uow: UnitOfWorkFactory
    outbox: OutboxReader

    def service(self, clock: ManualClock) -> TaskService:
        return TaskService(self.uow, clock)


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "dapr":
        async with dapr_store(request.getfixturevalue("pg_schema")) as dapr:
            yield dapr
        return
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'contract.db'}")
    else:
        schema = request.getfixturevalue("pg_schema")
        engine = create_engine(PG_DSN, schema=schema)
    await migrate(engine)
    try:
        yield Store(request.param, SqlUnitOfWorkFactory(engine), SqlOutboxReader(engine))
    finally:
        await engine.dispose()
