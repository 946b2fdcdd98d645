"""Serving a sidecar ASGI app on a real 127.0.0.1 port with uvicorn, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from starlette.types import ASGIApp


class SidecarServer:
    """One uvicorn server; can be stopped and started again on the same port."""

    def __init__(self, app: ASGIApp, port: int = 0) -> None:
        self._app = app
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            ws="none",
            log_level="warning",
            access_log=False,
        )
        server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve(), name="dapr-double-uvicorn")
        while not server.started:
            if self._task.done():
                await self._task  # re-raise the startup failure (e.g. port in use)
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.005)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Close the listening socket: clients then get "connection refused"."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
        self._task = None
