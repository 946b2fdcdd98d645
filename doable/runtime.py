"""The composition root: the one place that reads Settings and wires adapters to ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.auth import JwksCache, TokenVerifier, ensure_local_secret
from doable.delivery import Delivery, build_embedded, read_side
from doable.domain.clock import Clock, SystemClock
from doable.events.relay import CommitSignal
from doable.history import History
from doable.inbox import Inbox
from doable.live import LiveHub
from doable.logs import current_trace_id
from doable.ports import OutboxView, UnitOfWorkFactory
from doable.service import Limits, TaskService
from doable.settings import Settings
from doable.storage.sql.engine import create_engine, migrate, ping
from doable.storage.sql.repository import SqlOutboxReader, SqlUnitOfWorkFactory

log = structlog.get_logger("doable.runtime")


@dataclass
class Runtime:
    """Everything a process needs, built once per process (or per test)."""

    settings: Settings
    clock: Clock
    service: TaskService
    verifier: TokenVerifier
    outbox: OutboxView
    signing_secret: str | None
    # The SQL engine when this runtime stores in SQL; the chat Store adapter is chosen from it
    # (agent.store.build_chat_store), so building a runtime never imports the chat stack.
    sql_engine: AsyncEngine | None = None
    # Notifications inbox / webhook and task history (read by REST and MCP; written by workers).
    inbox: Inbox | None = None
    history: History | None = None
    # This process's live streams (SSE); fed by the task-updates and notifications subscriptions.
    live: LiveHub = field(default_factory=LiveHub)
    # Embedded mode: relay, bus, scheduler and the four workers, run by `start()`.
    delivery: Delivery | None = None
    # Dapr mode: the sidecar adapters (doable.dapr.wiring.DaprParts; the chat Store is chosen
    # from it) and the loops `start()` runs, such as the outbox relay (each has start/stop).
    dapr: Any | None = None
    background: list[Any] = field(default_factory=list)
    _closers: list[Any] = field(default_factory=list)
    _checks: dict[str, Any] = field(default_factory=dict)

    async def readiness(self) -> dict[str, str]:
        """Each backend's state, without details that could leak configuration."""
        results: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # any failure means "not ready"; the reason goes to the log only
                log.warning("readiness.failed", check=name, error=type(exc).__name__)
                results[name] = "unavailable"
        return results

    async def start(self) -> None:
        """Start background work (embedded mode: the relay, the job loop, the cron, the workers).
        `doable serve` calls it, and `doable mcp` (stdio) unless DOABLE_MCP_STDIO_WORKERS is off, so
        reminders fire while only an MCP client such as Claude Desktop runs; tools and tests only build."""
        if self.delivery is not None:
            await self.delivery.start()
        for loop in self.background:
            await loop.start()

    async def stop(self) -> None:
        for loop in reversed(self.background):
            await loop.stop()
        if self.delivery is not None:
            await self.delivery.stop()

    async def aclose(self) -> None:
        await self.stop()
        for close in reversed(self._closers):
            await close()


def sql_engine(settings: Settings) -> AsyncEngine:
    """The SQL engine for `settings` (URL, schema, timeouts): the one builder `serve`, `mcp` and
    `migrate` share."""
    return create_engine(
        settings.effective_database_url, schema=settings.database_schema, timeout=settings.database_timeout_seconds
    )


def token_verifier(settings: Settings, secret: str | None, jwks: JwksCache | None) -> TokenVerifier:
    """Verifies user tokens with the JWKS when one is configured, else with the shared secret."""
    return TokenVerifier(
        secret=None if jwks else secret,
        jwks=jwks,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        leeway_seconds=settings.jwt_leeway_seconds,
    )


def task_service(uow: UnitOfWorkFactory, clock: Clock, settings: Settings) -> TaskService:
    return TaskService(
        uow,
        clock,
        limits=Limits(tasks_per_user=settings.tasks_per_user, reminders_per_task=settings.reminders_per_task),
        trace_id=current_trace_id,
    )


async def build(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Wire the adapter family `settings.runtime` names: embedded (SQL, migrated here) or Dapr."""
    if settings.runtime == "dapr":
        from doable.dapr.wiring import build_runtime

        return await build_runtime(settings, clock=clock)
    clock = clock or SystemClock()
    engine = sql_engine(settings)
    await migrate(engine)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    jwks = JwksCache(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
    if secret is None and jwks is None:
        secret = ensure_local_secret(settings.data_dir)
    verifier = token_verifier(settings, secret, jwks)
    commits = CommitSignal(SqlUnitOfWorkFactory(engine))
    service = task_service(commits, clock, settings)
    outbox = SqlOutboxReader(engine)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        service=service,
        verifier=verifier,
        outbox=outbox,
        signing_secret=secret,
        sql_engine=engine,
    )
    runtime._closers.append(engine.dispose)
    runtime._checks["database"] = lambda: ping(engine)
    runtime.inbox, runtime.history = read_side(engine, clock, settings)
    runtime.delivery = build_embedded(
        engine=engine, service=service, outbox=outbox, clock=clock, settings=settings, hub=runtime.live
    )
    commits.connect(runtime.delivery.relay.nudge)
    return runtime


@asynccontextmanager
async def running(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    runtime = await build(settings, clock=clock)
    try:
        yield runtime
    finally:
        await runtime.aclose()
