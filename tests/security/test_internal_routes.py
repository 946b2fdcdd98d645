"""The routes only Dapr should call (subscriptions, event delivery, job triggers, the sweeper's
cron binding, service invocation) refuse everyone else: on every worker app (`doable worker
NAME`), with an app token and without one, and not at all exposed by embedded `doable serve`.

(The API's own Dapr-mode routes, with the calling app-id checks, are proven against the sidecar
double in tests/dapr_mode/test_dapr_routes.py.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from doable.adapters.sql.engine import create_engine, migrate
from doable.bootstrap.workers import WorkerTransport, build_worker_app
from doable.platform import topology
from doable.platform.settings import Settings
from doable.ports.messages import Job
from tests.reliability.processes import Server, server

APP_TOKEN = "app-token-" + "z" * 30


class Nothing:
    """Transport ports that record nothing: these tests never get past the door."""

    async def publish(self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None) -> None:
        return None

    async def schedule(self, job: Job) -> None:
        return None

    async def cancel(self, name: str) -> None:
        return None

    async def get(self, user_id: str, task_id: int) -> None:
        return None

    async def create_next(self, completed: Any) -> None:
        return None


@pytest.fixture
async def migrated(settings: Settings) -> Settings:
    engine = create_engine(settings.effective_database_url)
    await migrate(engine)
    await engine.dispose()
    return settings


def routes_of(name: str) -> list[tuple[str, str, bytes]]:
    """Every Dapr-facing route of worker `name`, with a body that would be handled if admitted."""
    event = json.dumps({"id": "e1", "topic": "t", "data": {"not": "an event"}}).encode()
    routes = [("GET", "/dapr/subscribe", b"")]
    routes += [("POST", f"/events/{name}-{topic}", event) for topic in topology.SUBSCRIPTIONS[topology.WORKER_APP_IDS[name]]]
    if name in ("reminders", "notifications"):
        routes.append(("POST", "/job/some-job", b"{}"))
    if name == "reminders":
        routes += [("POST", f"/{topology.REMINDER_SWEEP_BINDING}", b""), ("OPTIONS", f"/{topology.REMINDER_SWEEP_BINDING}", b"")]
    return routes


async def worker_client(settings: Settings, name: str, *, host: str) -> AsyncIterator[httpx2.AsyncClient]:
    nothing = Nothing()
    transport = WorkerTransport(publisher=nothing, jobs=nothing, tasks=nothing, occurrences=nothing)
    app = build_worker_app(settings, name, transport)
    async with app.router.lifespan_context(app):
        asgi = httpx2.ASGITransport(app=app, client=(host, 40000))
        async with httpx2.AsyncClient(transport=asgi, base_url="http://127.0.0.1:8000") as client:
            yield client


@pytest.mark.parametrize("name", sorted(topology.WORKER_APP_IDS))
async def test_with_an_app_token_worker_routes_answer_only_the_sidecar(migrated: Settings, name: str) -> None:
    settings = migrated.model_copy(update={"app_api_token": SecretStr(APP_TOKEN)})
    async for c in worker_client(settings, name, host="127.0.0.1"):
        for method, path, body in routes_of(name):
            for headers in ({}, {"dapr-api-token": ""}, {"dapr-api-token": "wrong"}, {"dapr-api-token": APP_TOKEN + " "}):
                response = await c.request(method, path, content=body, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.status_code)
            admitted = await c.request(method, path, content=body, headers={"dapr-api-token": APP_TOKEN})
            assert admitted.status_code == 200, (method, path, admitted.text)
        assert (await c.get("/healthz")).status_code == 200  # probes need no token


@pytest.mark.parametrize("name", sorted(topology.WORKER_APP_IDS))
async def test_without_an_app_token_worker_routes_answer_only_loopback(migrated: Settings, name: str) -> None:
    """No APP_API_TOKEN: the sidecar is the only local caller (it shares the pod's loopback)."""
    async for outside in worker_client(migrated, name, host="10.1.2.3"):
        for method, path, body in routes_of(name):
            response = await outside.request(method, path, content=body)
            assert response.status_code == 403, (method, path, response.status_code, response.text)
        assert (await outside.get("/healthz")).status_code == 200
    async for local in worker_client(migrated, name, host="127.0.0.1"):
        for method, path, body in routes_of(name):
            assert (await local.request(method, path, content=body)).status_code == 200, (method, path)


INTERNAL = [
    ("GET", "/dapr/subscribe"),
    ("POST", "/events/live-task-updates"),
    ("POST", "/events/reminders-task-events"),
    ("POST", "/job/rem-0-1-before-5m"),
    ("POST", "/reminder-sweep"),
    ("OPTIONS", "/reminder-sweep"),
    ("POST", "/internal/tasks/lookup"),
    ("POST", "/internal/occurrences/next"),
    ("GET", "/dapr/config"),
    ("POST", "/v1.0/invoke/doable-api/method/internal/tasks/lookup"),
]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Even with an app token configured (a copied Dapr environment), embedded serve has no Dapr routes.
    srv = server(tmp_path_factory.mktemp("embedded"), APP_API_TOKEN=APP_TOKEN)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_embedded_serve_exposes_no_internal_route(embedded: Server) -> None:
    body = {"user_id": "alice", "task_id": 1}
    forged = {"dapr-api-token": APP_TOKEN, "dapr-caller-app-id": topology.WORKER_APP_IDS["reminders"]}
    with httpx2.Client(base_url=embedded.base, timeout=10) as http:
        for method, path in INTERNAL:
            for headers in ({}, forged):
                response = http.request(method, path, json=body if method == "POST" else None, headers=headers)
                assert response.status_code in (404, 405), (method, path, response.status_code, response.text[:200])
                assert "task" not in response.text.lower() or "not_found" in response.text, response.text[:200]
