"""Limits against abuse of the HTTP server: back-off for clients that keep failing to authenticate,
a deadline for request heads and bodies that never finish, and the HTTP server's own limits.

Each limit is a setting (doable/platform/settings.py, the README's configuration table):
- `auth_failures_per_minute`: a client IP whose requests got that many 401s in the current minute
  gets 429 (with Retry-After) on the authenticated surfaces (/api, /mcp, /chatkit) until the
  minute ends. Behind a reverse proxy every client shares the proxy's address: raise the limit or
  set it to 0 there.
- `request_timeout_seconds`: a request whose head (request line and headers) or body does not
  arrive in full within this long is answered 408 (body) or its connection closed (head).
- `keep_alive_seconds`, `max_header_bytes`: uvicorn's keep-alive timeout and the largest request
  head (request line and headers: 431 beyond).
- `live_streams_per_user` is enforced by the live routes (doable/web/live.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from doable.platform.settings import Settings
from doable.web.middleware import send_json

log = structlog.get_logger("doable.limits")

# The surfaces that authenticate a bearer token (the ones a token guesser would hammer).
AUTHENTICATED_PREFIXES = ("/api/", "/mcp", "/chatkit")
# Clients remembered at once; the oldest are forgotten first (memory stays bounded).
MAX_TRACKED_CLIENTS = 10_000
WINDOW_SECONDS = 60.0


class AuthFailureLimit:
    """Per-client-IP back-off after repeated 401s (a fixed one-minute window)."""

    def __init__(self, app: ASGIApp, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.per_minute = per_minute
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def _window(self) -> int:
        return int(self._clock() // WINDOW_SECONDS)

    def blocked(self, ip: str) -> bool:
        window, count = self._failures.get(ip, (-1, 0))
        return window == self._window() and count >= self.per_minute

    def failed(self, ip: str) -> None:
        now = self._window()
        window, count = self._failures.pop(ip, (now, 0))
        self._failures[ip] = (now, count + 1 if window == now else 1)
        while len(self._failures) > MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.per_minute <= 0:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = str(client[0]) if client else "unknown"
        path = str(scope.get("path", ""))
        if path.startswith(AUTHENTICATED_PREFIXES) and self.blocked(ip):
            retry = max(1, math.ceil(WINDOW_SECONDS - self._clock() % WINDOW_SECONDS))
            body = (
                b'{"error":"rate_limited","message":"too many failed authentications from this address; '
                b"retry after " + str(retry).encode() + b' seconds"}'
            )
            await send_json(send, 429, body, [(b"retry-after", str(retry).encode())])
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.failed(ip)
                if self.blocked(ip):
                    log.warning("auth.rate_limited", client=ip, failures=self.per_minute)
            await send(message)

        await self.app(scope, receive, watch)


class BodyTimeout:
    """A request body must arrive in full within `seconds` of the request; else 408 (or, when the
    answer has already started, the request is abandoned)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False
        started = False

        async def timed() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()  # after the body: only a disconnect, which may come any time
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimedOut from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed, tracked)
        except _BodyTimedOut:
            log.info("http.body_timeout", seconds=self.seconds)
            if not started:
                body = f'{{"error":"request_timeout","message":"the request body did not arrive within {self.seconds:g} seconds"}}'
                await send_json(send, 408, body.encode(), [(b"connection", b"close")])


class _BodyTimedOut(Exception):
    pass


def guarded_httptools(head_timeout: float, max_head_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol (its C parser: ~0.3 ms a request cheaper than h11's here) with
    the two guards a request's head needs, which uvicorn gives only to h11 or not at all:
    - a deadline: a connection that opens and sends nothing, or trickles a request line and
      headers, is closed after `head_timeout` (uvicorn's keep-alive timer only covers the quiet
      time after a response, and stops as soon as any byte arrives);
    - a size: a head still unfinished after `max_head_bytes` is answered 431 and the connection
      closed (httptools itself buffers a head of any size)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        # Whether the next bytes are (part of) a request head: from the connection's start, and
        # after each response, until a head's end. Counted before the parser buffers them.
        _in_head = True
        _head_bytes = 0
        _tail = b""  # a head's last bytes so far: its end may straddle two reads

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(head_timeout, self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                seen = self._tail + data
                end = seen.find(b"\r\n\r\n")
                size = self._head_bytes + (len(data) if end < 0 else end + 4 - len(self._tail))
                if size > max_head_bytes:
                    self._refuse_head()
                    return
                self._head_bytes, self._tail = size, seen[-3:]
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes, self._tail = False, 0, b""
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The keep-alive timer now watches the idle connection; the next head re-arms ours.
            self._disarm()
            self._in_head = True

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _head_expired(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                log.info("http.head_timeout", seconds=head_timeout)
                self.transport.close()

        def _refuse_head(self) -> None:
            self._disarm()
            log.info("http.head_too_large", max_bytes=max_head_bytes)
            body = f"request line and headers must be at most {max_head_bytes} bytes".encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            self.transport.close()

    return GuardedHttpToolsProtocol


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments carrying the limits (`doable serve`)."""
    return {
        "http": guarded_httptools(settings.request_timeout_seconds, settings.max_header_bytes),
        "timeout_keep_alive": settings.keep_alive_seconds,
    }
