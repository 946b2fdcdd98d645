"""The composition root: the only code that knows which adapters exist.

`settings.runtime` names the adapter family, and this package is the one place that reads it:
`build` wires an API process (doable.bootstrap.embedded or doable.bootstrap.dapr) into a typed
`Runtime`; `worker_app` wires one worker process (doable.bootstrap.workers); `migrate_database`
and `signing_settings` serve the CLI. Transports (doable.web, doable.web.dapr_routes, agent, mcp_server)
never import this package: they take the parts they need as arguments or FastAPI dependencies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from doable.bootstrap.common import sql_engine
from doable.bootstrap.runtime import Runtime
from doable.domain.clock import Clock
from doable.domain.errors import DoableError
from doable.platform.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Runtime", "WrongRuntime", "build", "migrate_database", "running", "signing_settings", "sql_engine", "worker_app"]


class WrongRuntime(DoableError):
    """The command does not exist in this runtime; the message says what to do instead."""

    code = "configuration"


async def build(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Wire the adapter family `settings.runtime` names: embedded (SQL, migrated here) or Dapr.
    Each family's modules are imported only when chosen."""
    if settings.runtime == "dapr":
        from doable.bootstrap.dapr import build_runtime

        return await build_runtime(settings, clock=clock)
    from doable.bootstrap.embedded import build as build_embedded

    return await build_embedded(settings, clock=clock)


@asynccontextmanager
async def running(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    runtime = await build(settings, clock=clock)
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def migrate_database(settings: Settings) -> None:
    """`doable migrate`: the engine `serve` uses (URL, DOABLE_DATABASE_SCHEMA, timeouts), so both
    migrate the same schema."""
    from doable.adapters.sql.engine import migrate

    engine = sql_engine(settings)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def signing_settings(settings: Settings) -> Settings:
    """The settings `doable token` signs with: in Dapr mode without a configured key, the key the
    API verifies with (from the Dapr secret store), never a local file."""
    if settings.runtime == "dapr" and settings.jwt_secret is None and not settings.jwt_jwks_url:
        from doable.bootstrap.dapr import signing_settings as from_secret_store

        return await from_secret_store(settings)
    return settings


async def worker_app(settings: Settings, name: str) -> FastAPI:
    """`doable worker NAME`'s app: one worker as its own Dapr app, over its sidecar."""
    if settings.runtime != "dapr":
        raise WrongRuntime(
            f"in embedded mode the workers run inside `doable serve`; `doable worker {name}` runs one worker "
            "as its own Dapr app (set DOABLE_RUNTIME=dapr)"
        )
    from doable.bootstrap.dapr import worker_transport
    from doable.bootstrap.workers import build_worker_app

    return build_worker_app(settings, name, await worker_transport(settings, name))
