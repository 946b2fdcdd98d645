"""The repository contract runs against every storage adapter: add one here and it must pass all of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from doable.domain.clock import ManualClock
from doable.ports import OutboxReader, UnitOfWorkFactory
from doable.service import TaskService
from doable.storage.sql.engine import create_engine, migrate
from doable.storage.sql.repository import SqlOutboxReader, SqlUnitOfWorkFactory
from tests.conftest import PG_DSN

ADAPTERS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Store:
    name: str
    uow: UnitOfWorkFactory
    outbox: OutboxReader

    def service(self, clock: ManualClock) -> TaskService:
        return TaskService(self.uow, clock)


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
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
