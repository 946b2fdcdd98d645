"""The Dapr outbox relay of an idle API reads the state store rarely (Neon's free compute can
suspend), yet a commit is still published at once and another replica's events still hand over.

Time is scaled down: the relay polls every 50 ms while there is work and backs off, doubling, to
at most 800 ms while idle (in the OKE values: 2 s and 30 minutes). The state calls are counted at
the sidecar (the double), as Neon would count the queries."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.outbox import DaprOutbox
from doable.bootstrap import Runtime
from doable.bootstrap.dapr import build_runtime
from doable.platform import topology
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.conftest import auth, lifespan_running
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import DAPR_TOKEN, eventually

POLL = 0.05
IDLE_MAX = 0.8


class CountingSidecar:
    """ASGI wrapper of the double's sidecar that notes when each state API call arrives."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self.state_calls: list[float] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1.0/state/"):
            self.state_calls.append(time.monotonic())
        await self._app(scope, receive, send)

    def since(self, start: float) -> list[float]:
        return [t for t in self.state_calls if t >= start]


@pytest.fixture
def counting(double: DaprDouble) -> CountingSidecar:
    return CountingSidecar(double.sidecar_app(topology.API_APP_ID))


@pytest.fixture
async def idle_runtime(dapr_settings: Settings, counting: CountingSidecar) -> AsyncIterator[Runtime]:
    """The API's runtime in Dapr mode (as `doable serve` builds it) on the counting sidecar."""
    settings = dapr_settings.model_copy(update={"outbox_poll_seconds": POLL, "outbox_idle_max_seconds": IDLE_MAX})
    client = DaprClient("http://127.0.0.1:3500", api_token=DAPR_TOKEN, transport=httpx2.ASGITransport(app=counting))
    runtime = await build_runtime(settings, client=client)
    try:
        yield runtime
    finally:
        await runtime.aclose()


def test_the_idle_wait_doubles_up_to_the_maximum() -> None:
    outbox = DaprOutbox(None, "statestore", None, poll_seconds=2.0, idle_max_seconds=1800.0)  # type: ignore[arg-type]
    waits = [outbox.idle_wait(n) for n in range(12)]
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0]
    assert waits[-1] == 1800.0 and max(waits) == 1800.0
    assert all(a <= b for a, b in itertools.pairwise(waits))
    # Without a maximum the relay keeps its fixed interval (the embedded defaults, other tests).
    assert DaprOutbox(None, "s", None, poll_seconds=1.0).idle_wait(10) == 1.0  # type: ignore[arg-type]


async def test_an_idle_api_reads_state_rarely_and_publishes_a_commit_at_once(
    idle_runtime: Runtime,
    counting: CountingSidecar,
    double: DaprDouble,
    token_for: Callable[..., str],
) -> None:
    application = create_app(idle_runtime)
    await double.register_app(topology.API_APP_ID, asgi_app=application)
    async with lifespan_running(application):  # starts the relay
        start = time.monotonic()
        await asyncio.sleep(4.0)
        calls = counting.since(start)
        # Polls at 0, 50, 150, 350, 750 ms, 1.55 s, then every 800 ms: about 9 in 4 s, where a
        # fixed 50 ms interval would make 80. Scaled to OKE (2 s -> 30 min): about 2 an hour.
        assert len(calls) <= 12, f"{len(calls)} state calls in 4 s"
        gaps = [b - a for a, b in itertools.pairwise(calls)]
        assert gaps[-2:] and min(gaps[-2:]) >= IDLE_MAX * 0.9, gaps
        steady = [t for t in calls if t >= start + 2.0]
        assert len(steady) <= 2.0 / IDLE_MAX + 1, f"{len(steady)} reads in the last 2 s"

        # A commit wakes the relay at once, however long the idle wait has grown.
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=application), base_url="http://127.0.0.1:8000"
        ) as http:
            committed = time.monotonic()
            created = await http.post("/api/tasks", json={"title": "wake up"}, headers=auth(token_for("alice")))
            assert created.status_code == 201, created.text
        await eventually(lambda: bool(double.published(topology.TASK_EVENTS)), within=IDLE_MAX / 2)
        assert time.monotonic() - committed < IDLE_MAX
        while await idle_runtime.outbox.depth():  # the tail advances right after the publishes
            assert time.monotonic() - committed < IDLE_MAX, "the relay did not finish the commit's events"
            await asyncio.sleep(0.02)
