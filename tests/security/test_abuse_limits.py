"""Limits against abuse: back-off after repeated bad tokens, a cap on a user's live streams,
deadlines for request heads and bodies that never finish, and webhooks that connect to the
address that was checked (no DNS rebinding)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import uvicorn

from doable.bootstrap import Runtime, build
from doable.platform.settings import Settings
from doable.usecases.live import LiveHub, TooManyStreams
from doable.web.app import create_app
from doable.web.limits import AuthFailureLimit, BodyTimeout, server_options
from tests.conftest import auth, lifespan_running
from workers.webhooks import WebhookSender

# ---- back-off after repeated 401s ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    authorized = dict(scope["headers"]).get(b"authorization") == b"Bearer good"
    await send({"type": "http.response.start", "status": 200 if authorized else 401, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _status(app: Any, path: str, ip: str, token: str) -> int:
    transport = httpx2.ASGITransport(app=app, client=(ip, 5000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        return (await http.get(path, headers={"Authorization": f"Bearer {token}"})).status_code


@pytest.mark.parametrize("path", ["/api/tasks", "/mcp", "/chatkit", "/api/notifications/stream"])
async def test_a_client_that_keeps_failing_to_authenticate_is_made_to_wait(path: str) -> None:
    clock = FakeClock()
    limited = AuthFailureLimit(_ok, per_minute=3, clock=clock)
    assert [await _status(limited, path, "203.0.113.5", "bad") for _ in range(3)] == [401, 401, 401]
    # Blocked for the rest of the minute, even with a good token (the address is what is limited) ...
    assert await _status(limited, path, "203.0.113.5", "bad") == 429
    assert await _status(limited, path, "203.0.113.5", "good") == 429
    # ... other clients are not, and public routes stay open.
    assert await _status(limited, path, "198.51.100.7", "good") == 200
    assert await _status(limited, "/healthz", "203.0.113.5", "good") == 200
    clock.now += 60  # the next minute
    assert await _status(limited, path, "203.0.113.5", "good") == 200


async def test_the_limit_answers_with_retry_after_and_is_off_at_zero(settings: Settings) -> None:
    runtime = await build(settings.model_copy(update={"auth_failures_per_minute": 2}))
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            transport = httpx2.ASGITransport(app=app, client=("203.0.113.9", 4000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                for _ in range(2):
                    assert (await http.get("/api/tasks", headers=auth("nope"))).status_code == 401
                limited = await http.get("/api/tasks", headers=auth("nope"))
                assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
                assert limited.json()["error"] == "rate_limited"
    finally:
        await runtime.aclose()
    off = AuthFailureLimit(_ok, per_minute=0)
    assert {await _status(off, "/api/tasks", "203.0.113.5", "bad") for _ in range(20)} == {401}


# ---- live streams per user ---------------------------------------------------------------------


@pytest.fixture
async def two_stream_app(settings: Settings) -> AsyncIterator[tuple[Any, Runtime]]:
    runtime = await build(settings.model_copy(update={"live_streams_per_user": 2}))
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            yield app, runtime
    finally:
        await runtime.aclose()


async def test_a_user_holds_at_most_the_configured_number_of_live_streams(
    two_stream_app: tuple[Any, Runtime], token_for: Callable[..., str]
) -> None:
    app, runtime = two_stream_app
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        async with (
            runtime.live.connect("alice", frozenset({"task"})),
            runtime.live.connect("alice", frozenset({"task"})),
        ):
            # Alice holds two streams: a third is refused before it starts (a 429 is not a stream).
            for path in ("/api/updates/stream", "/api/notifications/stream"):
                refused = await http.get(path, headers=auth(token_for("alice")))
                assert refused.status_code == 429 and refused.json()["error"] == "too_many_streams"
                assert refused.headers["retry-after"]
        assert runtime.live.connections("alice") == 0


async def test_the_hub_refuses_a_stream_past_the_limit_even_when_requests_race() -> None:
    hub = LiveHub()
    async with hub.connect("alice", frozenset({"task"}), limit=1):
        with pytest.raises(TooManyStreams):
            async with hub.connect("alice", frozenset({"task"}), limit=1):
                pass
        assert hub.connections("alice") == 1
    assert hub.connections("alice") == 0


# ---- requests that never finish ----------------------------------------------------------------


async def test_a_body_that_never_finishes_gets_408() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guarded = BodyTimeout(app, seconds=0.05)
    sent: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guarded({"type": "http", "method": "POST", "path": "/api/tasks", "headers": []}, receive, send)
    assert sent[0]["status"] == 408


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sent", [b"", b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "])
async def test_a_connection_whose_request_head_never_finishes_is_closed(settings: Settings, sent: bytes) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    port = _free_port()
    options = server_options(settings.model_copy(update={"request_timeout_seconds": 0.2}))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off", **options)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no start event
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        await writer.drain()
        # The server closes the connection (EOF); without the deadline this would wait forever.
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        # A complete request on a fresh connection is answered as usual.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 30)
        assert answer.startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize("chunks", [1, 7])
async def test_a_request_head_over_the_limit_gets_431_and_one_under_it_is_served(
    settings: Settings, chunks: int
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    limit = 4096
    port = _free_port()
    options = server_options(settings.model_copy(update={"max_header_bytes": limit}))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off", **options)
    )
    serving = asyncio.create_task(server.serve())

    async def ask(head: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        step = -(-len(head) // chunks)
        for i in range(0, len(head), step):  # in pieces, as a slow or hostile client sends it
            writer.write(head[i : i + step])
            await writer.drain()
            await asyncio.sleep(0.01)
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return answer

    def head_of(size: int) -> bytes:
        start = b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: "
        return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"

    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no start event
            await asyncio.sleep(0.01)
        assert len(head_of(limit + 1)) == limit + 1
        refused = await ask(head_of(limit + 1))
        assert refused.startswith(b"HTTP/1.1 431"), refused[:80]
        assert str(limit).encode() in refused  # the answer says the limit
        served = await ask(head_of(limit))  # the limit itself is allowed
        assert served.startswith(b"HTTP/1.1 200"), served[:80]
    finally:
        server.should_exit = True
        await serving


# ---- webhooks: connect to the checked address ----------------------------------------------------


class RebindingResolver:
    """Answers a public address first, then a private one: a DNS rebinding attack."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


@pytest.mark.parametrize("url", ["https://hooks.example.com/in", "http://hooks.example.com:8080/in?x=1"])
async def test_a_webhook_connects_to_the_address_that_was_checked(url: str) -> None:
    resolver = RebindingResolver(["93.184.216.34"], ["127.0.0.1"])
    seen: list[httpx2.Request] = []

    def endpoint(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(204)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(endpoint))
    sender = WebhookSender(client=client, resolver=resolver)
    result = await sender.send(url, '{"a":1}', secret="s", delivery_id=1, timestamp=1)
    await client.aclose()

    assert result.ok and resolver.calls == 1
    [request] = seen
    assert request.url.host == "93.184.216.34"  # the vetted address, not a second lookup
    original = httpx2.URL(url)
    assert request.headers["host"] == (original.host if original.port is None else f"{original.host}:{original.port}")
    if original.scheme == "https":
        assert request.extensions["sni_hostname"] == "hooks.example.com"  # TLS checks the real name


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.1.2.3"], ["93.184.216.34", "192.168.0.1"], ["::1"], ["fd00::1"], ["169.254.169.254"]],
)
async def test_a_webhook_name_with_any_private_address_is_refused(addresses: list[str]) -> None:
    seen: list[httpx2.Request] = []
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: seen.append(r) or httpx2.Response(204)))
    sender = WebhookSender(client=client, resolver=RebindingResolver(addresses))
    result = await sender.send("https://hooks.example.com/in", "{}", secret="s", delivery_id=1, timestamp=1)
    await client.aclose()
    assert not result.ok and "private" in (result.error or "") and seen == []
