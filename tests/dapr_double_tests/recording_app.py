"""A tiny FastAPI app that plays the part of a Dapr-enabled service in the double's tests.

It declares subscriptions, records every request the sidecar sends it, and answers
with scripted replies so tests can drive RETRY / DROP / error paths.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON body, or None for an empty body


SUCCESS = Reply(200, {"status": "SUCCESS"})
RETRY = Reply(200, {"status": "RETRY"})
DROP = Reply(200, {"status": "DROP"})


@dataclass(frozen=True)
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    query: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingApp:
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _replies: dict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))

    def __post_init__(self) -> None:
        self._arrived = asyncio.Event()
        self.app = FastAPI()
        app = self.app

        @app.get("/dapr/subscribe")
        async def subscribe(request: Request) -> JSONResponse:
            self.received.append(Received("/dapr/subscribe", "GET", dict(request.headers), b""))
            return JSONResponse(self.subscriptions)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def anything(path: str, request: Request) -> Response:
            body = await request.body()
            received = Received(f"/{path}", request.method, dict(request.headers), body, request.url.query)
            self.received.append(received)
            self._arrived.set()
            if request.headers.get("content-type", "").startswith("application/cloudevents+json"):
                # Events may ask the handler to be slow, to expose ordering bugs.
                data = json.loads(body).get("data")
                if isinstance(data, dict) and data.get("sleep"):
                    await asyncio.sleep(float(data["sleep"]))
            if path.startswith("echo"):
                return JSONResponse(
                    {"method": request.method, "path": f"/{path}", "query": request.url.query,
                     "headers": dict(request.headers), "body": body.decode()},
                    status_code=201,
                    headers={"x-echo": "yes"},
                )  # fmt: skip
            queue = self._replies[f"/{path}"]
            reply = queue.popleft() if queue else Reply(200)
            if reply.body is None:
                return Response(status_code=reply.status)
            return JSONResponse(reply.body, status_code=reply.status)

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies`, in order (then plain 200)."""
        self._replies[path].extend(replies)

    async def wait_for(self, path: str, count: int = 1, *, timeout: float = 5.0) -> list[Received]:  # noqa: ASYNC109
        """Wait until `path` has received `count` requests."""
        async with asyncio.timeout(timeout):
            while len(self.at(path)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.at(path)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def events(self, path: str) -> list[dict[str, Any]]:
        """CloudEvents received on `path`."""
        return [r.json() for r in self.at(path)]


def subscription(
    topic: str,
    route: str | None = None,
    *,
    rules: list[dict[str, str]] | None = None,
    default: str | None = None,
    dead_letter: str | None = None,
    pubsub: str = "pubsub",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A `/dapr/subscribe` entry: v1 shape with `route`, v2 shape with `rules`/`default`."""
    entry: dict[str, Any] = {"pubsubname": pubsub, "topic": topic}
    if route is not None:
        entry["route"] = route
    if rules is not None or default is not None:
        entry["routes"] = {"rules": rules or [], **({"default": default} if default else {})}
    if dead_letter:
        entry["deadLetterTopic"] = dead_letter
    if metadata:
        entry["metadata"] = metadata
    return entry
