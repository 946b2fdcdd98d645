"""What Dapr sees of each app: `GET /dapr/subscribe` as doable/platform/topology.py (and so the
components' scopes) says, and routes that answer only the sidecar: the app token, the calling
app-id for service invocation, loopback when no token is set, nothing at all in embedded mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
from fastapi import FastAPI
from pydantic import SecretStr

from doable.adapters.dapr.invocation import NEXT_OCCURRENCE_PATH, TASK_LOOKUP_PATH
from doable.bootstrap import Runtime
from doable.platform import topology
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.conftest import auth
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import APP_TOKEN, WorkerFactory, sidecar_client

APP_HEADERS = {"dapr-api-token": APP_TOKEN}


def client(app: Any, *, host: str = "127.0.0.1") -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, client=(host, 40000))
    return httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


async def test_every_app_subscribes_to_its_topology_topics_through_their_components(
    app: FastAPI, start_worker: WorkerFactory
) -> None:
    apps = {topology.API_APP_ID: app}
    for name, app_id in topology.WORKER_APP_IDS.items():
        apps[app_id] = await start_worker(name)
    for app_id, application in apps.items():
        async with client(application) as http:
            assert (await http.get("/dapr/subscribe")).status_code == 401
            subscriptions = (await http.get("/dapr/subscribe", headers=APP_HEADERS)).json()
            assert sorted(s["topic"] for s in subscriptions) == sorted(topology.SUBSCRIPTIONS[app_id]), app_id
            for sub in subscriptions:
                live = sub["topic"] in topology.LIVE_TOPICS
                # Live topics through the per-pod component (every API replica gets every update).
                assert sub["pubsubname"] == (topology.LIVE_PUBSUB if live else topology.PUBSUB), sub
                # The route exists and answers a CloudEvent (a malformed one is dropped, never retried) ...
                answer = await http.post(sub["routes"]["default"], json={"not": "a cloud event"}, headers=APP_HEADERS)
                if live:  # ... a live update nobody could show is not kept anywhere
                    assert "deadLetterTopic" not in sub
                    assert answer.json() == {"status": "DROP"}, (app_id, sub)
                elif sub["topic"] != topology.DEAD_LETTER:
                    assert sub["deadLetterTopic"] == topology.DEAD_LETTER
                    assert answer.json() == {"status": "DROP"}, (app_id, sub)
                else:  # ... but the dead-letter topic's consumer records it: nothing goes back to its topic
                    assert "deadLetterTopic" not in sub
                    assert answer.json() == {"status": "SUCCESS"}, (app_id, sub)


async def test_internal_routes_answer_only_the_allowed_caller_through_its_sidecar(
    app: FastAPI, double: DaprDouble, runtime: Runtime, http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    await http.post("/api/tasks", json={"title": "Secret"}, headers=auth(token_for("alice")))
    body = {"user_id": "alice", "task_id": 1}

    async def invoke_as(caller: str) -> httpx2.Response:
        sidecar = sidecar_client(double, caller, retries=0)
        try:
            return await sidecar.invoke(topology.API_APP_ID, TASK_LOOKUP_PATH, body=body)
        finally:
            await sidecar.aclose()

    allowed = await invoke_as(topology.WORKER_APP_IDS["reminders"])
    assert allowed.status_code == 200 and allowed.json()["task"]["title"] == "Secret"
    for caller in ("doable-audit", "doable-recurrence", "doable-notifications"):
        assert (await invoke_as(caller)).status_code == 403, caller

    # Straight at the app, not through a sidecar: no app token, no entry (nor with a forged caller).
    forged = {"dapr-caller-app-id": "doable-reminders"}
    assert (await http.post(TASK_LOOKUP_PATH, json=body, headers=forged)).status_code == 401
    assert (await http.post(NEXT_OCCURRENCE_PATH, json={"completed": {}}, headers=forged)).status_code == 401
    assert (await http.post("/events/live-task-updates", json={"id": "x", "data": {}})).status_code == 401
    with_token = await http.post(TASK_LOOKUP_PATH, json=body, headers={**APP_HEADERS, **forged})
    assert with_token.status_code == 200  # the token is the sidecar's: holding it is being the sidecar
    unknown = await http.post(
        TASK_LOOKUP_PATH, json={"user_id": "alice", "task_id": 99}, headers={**APP_HEADERS, **forged}
    )
    assert unknown.status_code == 404


async def test_without_an_app_token_only_loopback_reaches_the_dapr_routes(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(update={"app_api_token": None})
    application = create_app(runtime)
    body = {"user_id": "alice", "task_id": 1}
    caller = {"dapr-caller-app-id": "doable-reminders"}
    async with client(application, host="10.1.2.3") as outside:
        assert (await outside.get("/dapr/subscribe")).status_code == 403
        assert (await outside.post(TASK_LOOKUP_PATH, json=body, headers=caller)).status_code == 403
    async with client(application) as local:
        assert (await local.get("/dapr/subscribe")).status_code == 200
        assert (await local.post(TASK_LOOKUP_PATH, json=body, headers=caller)).status_code == 404


async def test_embedded_serve_mounts_no_dapr_route(settings: Settings) -> None:
    from doable.bootstrap import running

    async with running(settings.model_copy(update={"app_api_token": SecretStr(APP_TOKEN)})) as embedded:
        application = create_app(embedded)
        paths = {getattr(r, "path", "") for r in application.routes}
        assert not any(p.startswith(("/internal", "/dapr", "/events", "/job", "/reminder-sweep")) for p in paths)
        async with client(application) as local:
            answer = await local.post(TASK_LOOKUP_PATH, json={"user_id": "alice", "task_id": 1}, headers=APP_HEADERS)
            assert answer.status_code == 404
