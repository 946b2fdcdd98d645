"""ASGI middleware (pure ASGI so streaming responses pass through untouched)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from doable.domain.errors import Unavailable
from doable.platform.logs import trace_id_from
from doable.platform.metrics import HTTP_LATENCY

log = structlog.get_logger("doable.http")


class RequestContext:
    """Binds request id and trace id (from W3C traceparent, as Dapr passes it) to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        structlog.contextvars.clear_contextvars()
        request_id = headers.get("x-request-id", "")[:64] or secrets.token_hex(8)
        structlog.contextvars.bind_contextvars(
            request_id=request_id, trace_id=trace_id_from(headers.get("traceparent"))
        )
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            elapsed = time.perf_counter() - started
            HTTP_LATENCY.labels(method=scope["method"], route=route, status=str(status)).observe(elapsed)
            if route not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "http.request", method=scope["method"], route=route, status=status, ms=round(elapsed * 1000, 2)
                )


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if path:
        return str(path)
    raw = str(scope.get("path", ""))
    # Unmatched paths are bounded to a few known prefixes so labels cannot explode.
    for prefix in ("/mcp", "/api", "/chatkit", "/.well-known"):
        if raw.startswith(prefix):
            return prefix
    return "other"


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
        received = 0
        too_large = started = False

        async def limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            # A framework may catch the error from `receive` (FastAPI answers 400 "error parsing
            # the body"); the answer to a body over the limit is still 413.
            nonlocal started
            if too_large:
                if not started:
                    started = True
                    await _too_large(send, self.max_bytes)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except _BodyTooLarge:
            if not started:
                started = True
                await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with a JSON body from ASGI middleware (below FastAPI's response classes)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"error":"payload_too_large","message":"request body must be at most {limit} bytes"}}'.encode()
    await send_json(send, 413, body)


class OnlyPaths:
    """Serves `app` on the paths it owns; every other path gets the API's JSON 404.

    The MCP app is mounted at the root (its metadata must live at /.well-known/...), so without
    this a mistyped /api/... path or a wrong method would get the MCP app's plain-text answer."""

    def __init__(self, app: ASGIApp, *, exact: tuple[str, ...], prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.exact = exact
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path in self.exact or path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        body = b'{"error":"not_found","message":"no such endpoint; see /docs for the API"}'
        await send_json(send, 404, body)


class BackendUnavailable:
    """A backend outage raised below the routes (the MCP SDK's auth middleware asking the
    identity provider for its keys, say) is a 503 with Retry-After, as REST answers it: never
    a 500. The mounted app's own ServerErrorMiddleware sends its 500 and then re-raises, so a
    500 is held back until the call ends: replaced by the 503 when the error is an outage,
    passed on otherwise. Every other response streams through untouched."""

    def __init__(self, app: ASGIApp, *, retry_after_seconds: int = 5) -> None:
        self._app = app
        self._retry_after = str(retry_after_seconds).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        held: list[Message] = []
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] == 500:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                return
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        except Unavailable as exc:
            if started and not held:
                raise
            log.warning("http.backend_unavailable", path=scope.get("path"), error=str(exc))
            body = b'{"error":"unavailable","detail":"a service Doable depends on is unavailable; try again shortly"}'
            await send_json(send, 503, body, [(b"retry-after", self._retry_after)])
            return
        except BaseException:
            for message in held:
                await send(message)
            raise
        for message in held:
            await send(message)
