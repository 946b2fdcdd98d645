"""The part of the API app built on the MCP SDK (/mcp and OAuth), mounted last at the root.

Importing the MCP SDK was about a third of `doable serve`'s cold start, so `doable serve` builds
this part in the background once the server listens, as it does the chat stack: /readyz still
reports the backends, and a request for /mcp or OAuth that comes first waits for the build.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

log = structlog.get_logger("doable.web")

# What the builder imports; imported on a thread first so the event loop keeps serving meanwhile.
_SDK_MODULES = ("doable.oauth.wiring", "mcp_server.identity", "mcp_server.scopes", "mcp_server.server")


class SessionManager(Protocol):
    def run(self) -> AbstractAsyncContextManager[None]: ...


@dataclass(frozen=True)
class McpSide:
    """`app` routes OAuth and /mcp; `session_manager` must run while it serves; `closers` run at
    shutdown, before the session manager stops."""

    app: ASGIApp
    session_manager: SessionManager
    closers: list[Callable[[], Awaitable[None]]]


def _import_sdk() -> None:
    for name in _SDK_MODULES:
        importlib.import_module(name)


class McpSideMount:
    """The ASGI app mounted at the root: the MCP side, built at once or, given `after`, in the
    background once `after` is set (the server listens: importing the SDK on a thread meanwhile
    would slow the start it was deferred from). Every request awaits the same build; a failed
    build answers each request with its error."""

    def __init__(self, build: Callable[[], McpSide], *, after: asyncio.Event | None = None) -> None:
        self._build = build
        self._after = after
        self._side: asyncio.Future[McpSide] | None = None
        self._eager = build() if after is None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._eager is not None:  # as when it was mounted directly: OAuth answers without a lifespan
            await self._eager.app(scope, receive, send)
            return
        if self._side is None:
            raise RuntimeError("the app's lifespan has not started")
        side = await asyncio.shield(self._side)
        await side.app(scope, receive, send)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the MCP side for the app's lifespan (its session manager, then its closers)."""
        side = self._side = asyncio.get_running_loop().create_future()
        if self._eager is not None:
            async with self._serving(self._eager):
                yield
            return
        stop = asyncio.Event()
        task = asyncio.create_task(self._run_in_background(stop))
        try:
            yield
        finally:
            stop.set()
            if not side.done():  # still waiting or loading: nothing runs yet, so nothing to stop
                task.cancel()
                side.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @asynccontextmanager
    async def _serving(self, side: McpSide) -> AsyncIterator[None]:
        async with side.session_manager.run():
            assert self._side is not None
            self._side.set_result(side)
            try:
                yield
            finally:
                for close in side.closers:
                    await close()

    async def _run_in_background(self, stop: asyncio.Event) -> None:
        assert self._side is not None and self._after is not None
        await self._after.wait()
        try:
            await asyncio.to_thread(_import_sdk)
            side = self._build()
        except Exception as exc:
            log.error("mcp.load_failed", error_type=type(exc).__name__, error=str(exc))
            self._side.set_exception(exc)
            return
        async with self._serving(side):
            await stop.wait()
