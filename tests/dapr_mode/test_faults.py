"""Faults in Dapr mode: the broker refuses publishes, writers race on one user, the broker
redelivers, the sidecar goes down (and comes back), the sidecar is late at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import httpx2
import pytest

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.operations import Upsert
from doable.bootstrap import Runtime, build
from doable.domain.errors import Unavailable
from doable.platform import topology
from doable.platform.settings import Settings
from tests.conftest import auth
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import DAPR_TOKEN, WorkerFactory, eventually, settle, sidecar_client
from tests.e2e.conftest import McpConnect


async def history(http: httpx2.AsyncClient, token: str) -> list[tuple[str, int]]:
    entries = (await http.get("/api/history", params={"limit": 200}, headers=auth(token))).json()["entries"]
    return [(e["event"], e["task_id"]) for e in entries]


async def test_a_refused_publish_fails_no_write_and_the_event_is_delivered_later(
    runtime: Runtime,
    double: DaprDouble,
    start_worker: WorkerFactory,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    await start_worker("audit")
    token = token_for("alice")
    # More refusals than the client's own retries: the relay itself has to come back for it.
    double.fail_next_publishes(9)
    created = await http.post("/api/tasks", json={"title": "Survives the broker"}, headers=auth(token))
    assert created.status_code == 201, created.text
    await settle(runtime, double)

    assert {
        m.cloud_event["data"]["task_id"] for m in double.published_messages(topology.TASK_EVENTS) if m.cloud_event
    } == {1}
    assert await history(http, token) == [("created", 1)]


async def test_concurrent_writers_of_one_user_lose_no_update_and_share_no_id(
    runtime: Runtime, http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    h = auth(token_for("alice"))

    async def add(n: int) -> int:
        response = await http.post("/api/tasks", json={"title": f"task {n}"}, headers=h)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    ids = await asyncio.gather(*(add(n) for n in range(24)))
    assert sorted(ids) == list(range(1, 25))

    # Tasks 1 and 2 live in the same 64-task bucket: racing updates of both must all survive.
    async def rename(task_id: int, n: int) -> None:
        response = await http.patch(f"/api/tasks/{task_id}", json={"title": f"{task_id}:{n}"}, headers=h)
        assert response.status_code == 200, response.text

    await asyncio.gather(*(rename(task_id, n) for n in range(8) for task_id in (1, 2)))
    for task_id in (1, 2):
        task = await runtime.service.get("alice", task_id)
        assert task.version == 1 + 8 and task.title.startswith(f"{task_id}:")
    listed = (await http.get("/api/tasks", params={"limit": 200}, headers=h)).json()
    assert listed["total"] == 24 and len({t["id"] for t in listed["tasks"]}) == 24


async def test_a_redelivered_event_is_handled_once(
    runtime: Runtime,
    double: DaprDouble,
    start_worker: WorkerFactory,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    await start_worker("audit")
    double.duplicate_deliveries(10, app_id="doable-audit")
    token = token_for("alice")
    for title in ("one", "two"):
        assert (await http.post("/api/tasks", json={"title": title}, headers=auth(token))).status_code == 201
    await http.post("/api/tasks/1/complete", headers=auth(token))
    await settle(runtime, double)

    duplicates = [a for a in double.deliveries("doable-audit") if a.duplicate]
    assert len(duplicates) == 3 and all(a.outcome == "success" for a in duplicates)
    # One entry per event: the audit log keys its entries by the event id (it keeps no separate
    # processed record; tests/workers/test_idempotency.py covers the Deduplicator).
    assert await history(http, token) == [("completed", 1), ("created", 2), ("created", 1)]


async def test_a_handler_that_cannot_reach_its_store_answers_retry_and_succeeds_later(
    runtime: Runtime,
    double: DaprDouble,
    start_worker: WorkerFactory,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    await start_worker("audit")
    token = token_for("alice")
    double.pause_delivery()
    assert (await http.post("/api/tasks", json={"title": "later"}, headers=auth(token))).status_code == 201
    await eventually(lambda: bool(double.published(topology.TASK_EVENTS)))
    double.set_down(True)  # the worker's sidecar API fails; deliveries to it still happen
    double.resume_delivery()
    await eventually(lambda: any(a.outcome == "retry" for a in double.deliveries("doable-audit")))
    double.set_down(False)
    await settle(runtime, double)
    outcomes = [a.outcome for a in double.deliveries("doable-audit")]
    assert outcomes[0] == "retry" and outcomes[-1] == "success"
    assert await history(http, token) == [("created", 1)]


async def test_a_malformed_event_ends_on_the_dead_letter_topic(double: DaprDouble, start_worker: WorkerFactory) -> None:
    await start_worker("audit")
    sidecar = sidecar_client(double, topology.API_APP_ID)
    try:
        await sidecar.publish(
            topology.PUBSUB,
            topology.TASK_EVENTS,
            {"event_type": "exploded"},
            partition_key="alice",
            event_id="bad-1",
            event_type="doable.task-events.exploded",
        )
    finally:
        await sidecar.aclose()
    await double.wait_idle()
    # A bulk subscriber never answers DROP (doable.adapters.dapr.deliveries.answer_bulk): RETRY until the
    # chart's delivery policy (10 retries) runs out, then daprd dead-letters it.
    assert [a.outcome for a in double.deliveries("doable-audit", topology.TASK_EVENTS)] == ["retry"] * 11
    [dead] = double.published(topology.DEAD_LETTER)
    assert dead["id"] == "bad-1"
    # ... where the audit worker consumes it (tests/dapr_mode/test_dead_letters.py).
    assert [a.outcome for a in double.deliveries("doable-audit", topology.DEAD_LETTER)] == ["success"]


async def test_sidecar_down_is_a_clear_503_and_recovers_without_a_restart(
    runtime: Runtime,
    double: DaprDouble,
    http: httpx2.AsyncClient,
    mcp_as: McpConnect,
    token_for: Callable[..., str],
) -> None:
    h = auth(token_for("alice"))
    assert (await http.post("/api/tasks", json={"title": "before"}, headers=h)).status_code == 201

    double.set_down(True)
    down = await http.post("/api/tasks", json={"title": "during"}, headers=h)
    assert down.status_code == 503
    assert down.json() == {"error": "unavailable", "message": "the Dapr sidecar is unavailable; try again shortly"}
    assert (await http.get("/api/tasks", headers=h)).status_code == 503
    ready = await http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"] == {"sidecar": "unavailable"}
    async with mcp_as("alice") as client:
        result = await client.call_tool("list_tasks", {})
    assert result.is_error and "unavailable: the Dapr sidecar is unavailable" in result.content[0].text

    double.set_down(False)
    assert (await http.get("/readyz")).status_code == 200
    assert (await http.post("/api/tasks", json={"title": "after"}, headers=h)).status_code == 201
    await settle(runtime, double)
    titles = [
        t["title"]
        for t in (await http.get("/api/tasks", params={"sort": "created", "order": "asc"}, headers=h)).json()["tasks"]
    ]
    assert titles == ["before", "after"]
    assert len(double.published(topology.TASK_EVENTS)) == 2


async def test_start_up_waits_for_the_sidecar_without_blocking_the_loop(
    dapr_settings: Settings, double: DaprDouble, sidecar_url: str
) -> None:
    settings = dapr_settings.model_copy(update={"dapr_http_endpoint": sidecar_url})
    double.set_down(True)
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(ticking())
    building = asyncio.create_task(build(settings))
    await asyncio.sleep(0.4)
    assert not building.done() and ticks >= 10  # waiting, and the loop keeps running
    double.set_down(False)
    with anyio.fail_after(5):
        runtime = await building
    ticker.cancel()
    try:
        assert await runtime.readiness() == {"sidecar": "ok"}
    finally:
        await runtime.aclose()

    double.set_down(True)
    with pytest.raises(Unavailable, match="did not become ready"):
        await build(settings.model_copy(update={"dapr_startup_timeout": 0.3}))


class CountingTransport(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.sent = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.sent += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_slow_sidecar_gets_bounded_retries_and_a_transaction_is_never_repeated(
    double: DaprDouble, sidecar_url: str
) -> None:
    transport = CountingTransport()
    client = DaprClient(sidecar_url, api_token=DAPR_TOKEN, timeout=0.1, retries=2, backoff=0.01, transport=transport)
    double.set_latency(0.4)
    try:
        with anyio.fail_after(2), pytest.raises(Unavailable, match="sidecar is unavailable"):
            await client.get_state(topology.STATE_STORE, "k")
        assert transport.sent == 3  # the first try and two retries, then a clear error
        transport.sent = 0
        # A transaction that may have reached the store is not sent again: it could have committed.
        with anyio.fail_after(2), pytest.raises(Unavailable, match="did not answer in time"):
            await client.transact(topology.STATE_STORE, [Upsert("k", {"v": 1}, first_write=False)])
        assert transport.sent == 1
    finally:
        double.set_latency(0)
        await client.aclose()
