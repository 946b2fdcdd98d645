"""Workers under test: a runtime on a ManualClock, time moved explicitly, work run until idle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx2
import pytest

from doable.bootstrap import Runtime, build
from doable.domain.clock import ManualClock
from doable.domain.query import SortField, Status
from doable.platform.settings import Settings
from doable.ports.messages import Message, Outcome, Subscription
from doable.usecases.inputs import ListRequest
from doable.web.app import create_app
from tests.conftest import lifespan_running


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True, "webhook_max_attempts": 3})


@pytest.fixture
async def rt(worker_settings: Settings, clock: ManualClock) -> AsyncIterator[Runtime]:
    """A runtime whose loops are not running: tests drive it with `settle`."""
    runtime = await build(worker_settings, clock=clock)
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def settle(runtime: Runtime) -> None:
    """Publish the outbox, run every handler, fire due jobs; until nothing moves."""
    assert runtime.delivery is not None
    await runtime.delivery.settle()


async def advance(runtime: Runtime, clock: ManualClock, delta: timedelta) -> None:
    clock.advance(delta)
    await settle(runtime)


async def sweep(runtime: Runtime) -> None:
    assert runtime.delivery is not None
    await runtime.delivery.cron.tick()
    await settle(runtime)


async def tasks_of(runtime: Runtime, user: str, status: str = "all") -> list[Any]:
    page, _ = await runtime.service.list(user, ListRequest(status=Status(status), sort=SortField.DUE, limit=200))
    return page.tasks


@dataclass
class Recorder:
    """A subscription that keeps what it receives."""

    messages: list[Message]

    async def __call__(self, message: Message) -> Outcome:
        self.messages.append(message)
        return Outcome.SUCCESS


@pytest.fixture
def record(rt: Runtime) -> Callable[[str], Recorder]:
    def subscribe(topic: str) -> Recorder:
        assert rt.delivery is not None
        recorder = Recorder([])
        rt.delivery.bus.subscribe(Subscription(topic=topic, handler=recorder, name=f"test-{topic}"))
        return recorder

    return subscribe


@pytest.fixture
async def wapp(rt: Runtime) -> AsyncIterator[Any]:
    """The API app over the ManualClock runtime, lifespan running (so its loops run too)."""
    application = create_app(rt)
    async with lifespan_running(application):
        yield application


@pytest.fixture
async def whttp(wapp: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=wapp), base_url="http://127.0.0.1:8000") as c:
        yield c


@dataclass(frozen=True)
class Sse:
    event: str
    data: dict[str, Any]
    id: str | None


class SseStream:
    """Events of a streaming response read straight off the ASGI app (httpx's ASGI transport
    buffers whole bodies, which never end for a live stream)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffer = ""
        self.started = asyncio.Event()

    async def next(self, within: float = 2.0) -> Sse:
        while True:
            if "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                parsed = _parse(block)
                if parsed is not None:
                    return parsed
                continue
            self._buffer += (await asyncio.wait_for(self._chunks.get(), within)).decode()

    async def nothing_within(self, seconds: float) -> bool:
        try:
            event = await self.next(within=seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected event {event}")


def _parse(block: str) -> Sse | None:
    fields: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value
    if "event" not in fields:
        return None
    return Sse(event=fields["event"], data=json.loads(fields.get("data", "{}")), id=fields.get("id"))


@asynccontextmanager
async def open_stream(app: Any, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[SseStream]:
    stream = SseStream()
    disconnect = asyncio.Event()
    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
    }
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            stream.status = message["status"]
            stream.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            stream.started.set()
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await stream._chunks.put(message["body"])
            if not message.get("more_body", False):
                stream.started.set()

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(stream.started.wait(), 5)
    try:
        yield stream
    finally:
        disconnect.set()
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            task.cancel()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` on a real port of 127.0.0.1 (uvicorn, in this event loop); yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class Endpoint:
    """A webhook receiver (ASGI) answering with scripted statuses, then 200."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.received: list[Received] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(Received({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
