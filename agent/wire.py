"""Checks on what the model server sends back, before the OpenAI client and the Agents SDK see it.

A misbehaving server (a proxy's HTML page answered with 200, a body that is not JSON, a stream
cut before its end) would otherwise become an empty reply, or partial text passed off as the
whole answer. This transport wraps the real one and raises `ModelReplyError` while the body is
read when the answer is not what the API promises:
- a streamed answer (`"stream": true`) must be an event stream whose `data:` lines are JSON (or
  Chat Completions' `[DONE]`), and must reach its end: `[DONE]` for Chat Completions, a
  `response.completed` / `response.incomplete` / `response.failed` event for Responses;
- any other 2xx answer must be JSON.
Error statuses pass through untouched: the OpenAI client turns them into its own errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2

# Responses API events that end a stream (the SDK and the client handle each of them).
_RESPONSES_END = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
_LINE_MAX = 16 * 1024 * 1024


class ModelReplyError(Exception):
    """The model server's answer cannot be used: `reason` says why (safe to log, no content)."""

    def __init__(self, reason: str, *, cut: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cut = cut


def _streaming(request: httpx2.Request) -> bool:
    try:
        body = json.loads(request.content or b"{}")
    except (ValueError, httpx2.RequestNotRead):
        return False
    return isinstance(body, dict) and body.get("stream") is True


class _Checked(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, *, content_type: str, streaming: bool, completions: bool) -> None:
        self._inner = inner
        self._content_type = content_type
        self._streaming = streaming
        self._completions = completions
        self._pending = b""
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._streaming:
            async for chunk in self._events():
                yield chunk
            return
        body = b""
        async for chunk in self._inner:
            body += chunk
        try:
            json.loads(body)
        except ValueError:
            raise ModelReplyError(
                f"the model server answered 2xx with a body that is not JSON ({self._content_type or 'no content type'})"
            ) from None
        yield body

    async def _events(self) -> AsyncIterator[bytes]:
        if not self._content_type.startswith("text/event-stream"):
            raise ModelReplyError(
                f"the model server answered a streamed request with {self._content_type or 'no content type'}, not an event stream"
            )
        # What was read and whether the end was seen live on the instance: the OpenAI client stops
        # iterating at `[DONE]`, then drains the rest through a second iteration
        # (`_streaming_cleanup.drain_response_async`), which must know the end was already seen.
        async for chunk in self._inner:
            self._pending += chunk
            *lines, self._pending = self._pending.split(b"\n")
            if len(self._pending) > _LINE_MAX:
                raise ModelReplyError("the model server sent an over-long event line")
            for line in lines:
                self._ended = self._check(line.rstrip(b"\r")) or self._ended
            yield chunk
        if self._pending:
            self._ended = self._check(self._pending.rstrip(b"\r")) or self._ended
            self._pending = b""
        if not self._ended:
            raise ModelReplyError("the model's answer was cut off before it finished", cut=True)

    def _check(self, line: bytes) -> bool:
        """Whether `line` ends the stream; ModelReplyError if its data is not JSON."""
        if not line.startswith(b"data:"):
            return False
        data = line[5:].strip()
        if self._completions and data == b"[DONE]":
            return True
        try:
            event = json.loads(data)
        except ValueError:
            raise ModelReplyError("the model server sent an event that is not JSON") from None
        if self._completions:
            return False
        return isinstance(event, dict) and event.get("type") in _RESPONSES_END

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


class CheckedTransport(httpx2.AsyncBaseTransport):
    """Wraps `inner` (the real transport) with the checks above on 2xx answers."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if not 200 <= response.status_code < 300:
            return response
        checked = _Checked(
            response.stream,
            content_type=response.headers.get("content-type", "").lower(),
            streaming=_streaming(request),
            completions=request.url.path.endswith("/chat/completions"),
        )
        return httpx2.Response(
            response.status_code, headers=response.headers, stream=checked, extensions=response.extensions
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def checked_client(timeout: float) -> httpx2.AsyncClient:
    """The HTTP client for the OpenAI client: its usual defaults, over the checked transport."""
    from openai import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(timeout=timeout, transport=CheckedTransport(httpx2.AsyncHTTPTransport()))
