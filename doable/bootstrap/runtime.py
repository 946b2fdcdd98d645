"""The typed parts of one API process, as an assembly (embedded or Dapr) wired them.

Transports never see this class: `create_app`, the chat router and the CLI's MCP server take the
parts they need (doable.web.app.ApiParts names them), and web routes get theirs through
`doable.web.deps`. Only the assemblies fill it; tests and tools read it to drive the adapters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog

from doable.domain.clock import Clock
from doable.platform.auth import TokenVerifier
from doable.platform.settings import Settings
from doable.ports import OutboxView
from doable.usecases.history import History
from doable.usecases.inbox import Inbox
from doable.usecases.live import LiveHub
from doable.usecases.service import TaskService

if TYPE_CHECKING:
    from chatkit.store import Store
    from fastapi import APIRouter
    from sqlalchemy.ext.asyncio import AsyncEngine

    from agent.context import ChatContext
    from doable.bootstrap.dapr import DaprParts
    from doable.bootstrap.embedded import Delivery
    from doable.oauth.store import OAuthStore

log = structlog.get_logger("doable.runtime")

Check = Callable[[], Awaitable[None]]
Close = Callable[[], Awaitable[None]]


class BackgroundLoop(Protocol):
    """Work that runs while the process serves (the Dapr outbox relay)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def readiness(checks: Mapping[str, Check]) -> dict[str, str]:
    """Each backend's state, without details that could leak configuration."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await check()
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason goes to the log only
            log.warning("readiness.failed", check=name, error=type(exc).__name__)
            results[name] = "unavailable"
    return results


def _no_routes(_: Runtime) -> list[APIRouter]:
    return []


@dataclass
class Runtime:
    """Everything an API process needs, built once per process (or per test) by
    `doable.bootstrap.build`. Mutable on purpose: tests swap a verifier or relabel settings
    before they build an app over it."""

    settings: Settings
    clock: Clock
    service: TaskService
    verifier: TokenVerifier
    outbox: OutboxView
    signing_secret: str | None
    inbox: Inbox
    history: History
    # The chat Store adapter of this family, built when the chat router is (so building a
    # runtime never imports the chat stack).
    chat_store: Callable[[], Store[ChatContext]]
    # One process over a local data dir (embedded): it has a local user and local sign-in, may
    # run the built-in OAuth server and the workers in-process; never one of several replicas.
    standalone: bool
    live: LiveHub = field(default_factory=LiveHub)
    # Where the built-in OAuth server keeps its clients and grants (None: this family has none).
    oauth_store: Callable[[int], OAuthStore] | None = None
    # Routes this family adds to the API app (Dapr: subscriptions and service invocation),
    # built from the runtime as it is when the app is created.
    api_routes: Callable[[Runtime], list[APIRouter]] = _no_routes
    checks: Mapping[str, Check] = field(default_factory=dict)
    closers: Sequence[Close] = ()
    background: Sequence[BackgroundLoop] = ()
    # Each family's own parts, for tests and tools that drive them by hand (settle, depth).
    sql_engine: AsyncEngine | None = None
    delivery: Delivery | None = None
    dapr: DaprParts | None = None

    def api_routers(self) -> list[APIRouter]:
        return self.api_routes(self)

    async def readiness(self) -> dict[str, str]:
        return await readiness(self.checks)

    async def start(self) -> None:
        """Start background work (embedded: the relay, the job loop, the cron, the workers; Dapr:
        the outbox relay). `doable serve` calls it, and `doable mcp` (stdio) in a standalone
        process unless DOABLE_MCP_STDIO_WORKERS is off, so reminders fire while only an MCP client
        such as Claude Desktop runs; tools and tests only build."""
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
        for close in reversed(self.closers):
            await close()
