"""Secrets, service invocation, API tokens, health, metadata, bindings, fault switches and a real port."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from tests.dapr_double import DaprDouble
from tests.dapr_double.server import SidecarServer

from .conftest import DoubleFactory
from .recording_app import RecordingApp, subscription

pytestmark = pytest.mark.asyncio

SECRETS = {"kubernetes": {"openai": {"api-key": "sk-test"}, "pg": {"user": "u", "password": "p"}}}


async def test_secret_and_bulk_secrets(make_double: DoubleFactory) -> None:
    client = (await make_double(secrets=SECRETS)).client()
    assert (await client.get("/v1.0/secrets/kubernetes/openai")).json() == {"api-key": "sk-test"}
    assert (await client.get("/v1.0/secrets/kubernetes/bulk")).json() == SECRETS["kubernetes"]


async def test_unknown_secret_and_store(make_double: DoubleFactory) -> None:
    client = (await make_double(secrets=SECRETS)).client()
    missing = await client.get("/v1.0/secrets/kubernetes/nope")
    assert (missing.status_code, missing.json()["errorCode"]) == (500, "ERR_SECRET_GET")
    unknown = await client.get("/v1.0/secrets/vault/openai")
    assert (unknown.status_code, unknown.json()["errorCode"]) == (401, "ERR_SECRET_STORE_NOT_FOUND")


async def test_no_secret_store_configured_is_500(double: DaprDouble) -> None:
    response = await double.client().get("/v1.0/secrets/kubernetes/openai")
    assert (response.status_code, response.json()["errorCode"]) == (500, "ERR_SECRET_STORES_NOT_CONFIGURED")


async def test_invocation_forwards_the_call_with_dapr_headers(make_double: DoubleFactory) -> None:
    double = await make_double(api_token="sidecar-secret", app_token="app-secret")
    callee = RecordingApp()
    await double.register_app("tasks", asgi_app=callee.app)
    response = await double.client("api").put(
        "/v1.0/invoke/tasks/method/echo/items?limit=5",
        content=b'{"title": "milk"}',
        headers={"content-type": "application/json", "x-request-id": "r1"},
    )
    assert response.status_code == 201  # the app's status, headers and body come back unchanged
    assert response.headers["x-echo"] == "yes"
    echoed = response.json()
    assert (echoed["method"], echoed["path"], echoed["query"]) == ("PUT", "/echo/items", "limit=5")
    assert echoed["body"] == '{"title": "milk"}'
    headers = echoed["headers"]
    assert headers["dapr-caller-app-id"] == "api"
    assert headers["dapr-callee-app-id"] == "tasks"
    assert headers["x-request-id"] == "r1"
    assert headers["dapr-api-token"] == "app-secret"  # the callee's app token, not the caller's API token
    assert headers["traceparent"].startswith("00-")


async def test_invocation_by_dapr_app_id_header(double: DaprDouble, app: RecordingApp) -> None:
    response = await double.client("worker").post("/echo/x", headers={"dapr-app-id": "api"}, content=b"hi")
    assert response.status_code == 201
    assert response.json()["path"] == "/echo/x"
    assert response.json()["headers"]["dapr-caller-app-id"] == "worker"
    assert "dapr-app-id" not in response.json()["headers"]


async def test_invoking_an_unknown_app_is_500(double: DaprDouble) -> None:
    response = await double.client().get("/v1.0/invoke/ghost/method/anything")
    assert (response.status_code, response.json()["errorCode"]) == (500, "ERR_DIRECT_INVOKE")


async def test_api_token_is_required_except_for_health(make_double: DoubleFactory) -> None:
    double = await make_double(api_token="sidecar-secret")
    anonymous = double.client(api_token="")
    denied = await anonymous.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert denied.status_code == 401
    wrong = double.client(api_token="guess")
    assert (await wrong.get("/v1.0/state/statestore/k")).status_code == 401
    assert (await anonymous.get("/v1.0/healthz")).status_code == 204
    assert (await anonymous.get("/v1.0/healthz/outbound")).status_code == 204
    allowed = await double.client().post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert allowed.status_code == 204


async def test_metadata_lists_app_id_components_and_subscriptions(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    app.subscriptions = [subscription("t", "/events", dead_letter="t-dlq")]
    double = await make_double(app=app.app, secrets=SECRETS)
    body = (await double.client().get("/v1.0/metadata")).json()
    assert body["id"] == "api"
    assert {c["name"] for c in body["components"]} == {"statestore", "pubsub", "live-pubsub", "kubernetes"}
    [sub] = body["subscriptions"]
    assert (sub["topic"], sub["deadLetterTopic"], sub["rules"]) == ("t", "t-dlq", [{"match": "", "path": "/events"}])


async def test_cron_binding_posts_to_the_component_route(double: DaprDouble, app: RecordingApp) -> None:
    response = await double.trigger_binding("api", "recurring-tick")
    assert response.status_code == 200
    [call] = app.at("/recurring-tick")
    assert call.method == "POST"
    assert call.body == b""
    assert call.headers["timezone"] == "UTC"
    assert "readtimeutc" in call.headers


async def test_down_sidecar_answers_500_and_recovers(double: DaprDouble) -> None:
    client = double.client()
    double.set_down(True)
    assert (await client.get("/v1.0/healthz")).status_code == 500
    assert (await client.post("/v1.0/publish/pubsub/t", json={})).status_code == 500
    double.set_down(False)
    assert (await client.get("/v1.0/healthz")).status_code == 204


async def test_latency_delays_every_call(double: DaprDouble) -> None:
    double.set_latency(0.2)
    started = time.monotonic()
    await double.client().get("/v1.0/healthz")
    assert time.monotonic() - started >= 0.2


async def test_served_sidecar_on_a_real_port_can_become_unreachable(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    app.subscriptions = [subscription("t", "/events")]
    double = await make_double(app=app.app)
    async with double.serve(port=0) as base_url, httpx2.AsyncClient(base_url=base_url) as client:
        assert base_url.startswith("http://127.0.0.1:")
        assert (await client.post("/v1.0/publish/pubsub/t", json={"n": 1})).status_code == 204
        await double.wait_idle()
        assert len(app.at("/events")) == 1

        await double.set_unreachable(True)
        with pytest.raises(httpx2.ConnectError):
            await client.get("/v1.0/healthz")
        await double.set_unreachable(False)
        assert (await client.get("/v1.0/healthz")).status_code == 204


async def test_app_behind_a_real_url_receives_deliveries(make_double: DoubleFactory) -> None:
    """Apps can be reached over a real URL too (here the recording app served by uvicorn)."""
    worker = RecordingApp([subscription("t", "/events")])
    server = SidecarServer(worker.app)
    await server.start()
    try:
        double = await make_double()
        await double.register_app("worker", base_url=server.url)
        await double.client().post("/v1.0/publish/pubsub/t", json={"n": 1})
        await double.wait_idle()
        assert worker.events("/events")[0]["data"] == {"n": 1}
    finally:
        await server.stop()


async def test_concurrent_sidecars_share_one_state_store(make_double: DoubleFactory) -> None:
    double = await make_double(key_prefix="none")
    api, worker = double.client("api"), double.client("worker")
    await asyncio.gather(
        api.post("/v1.0/state/statestore", json=[{"key": "a", "value": 1}]),
        worker.post("/v1.0/state/statestore", json=[{"key": "b", "value": 2}]),
    )
    bulk = (await api.post("/v1.0/state/statestore/bulk", json={"keys": ["a", "b"]})).json()
    assert [i["data"] for i in bulk] == [1, 2]


async def test_primary_app_at_a_url_can_come_up_after_the_double(make_double: DoubleFactory) -> None:
    late = RecordingApp([subscription("t", "/events")])
    server = SidecarServer(late.app)
    await server.start()
    url = server.url
    await server.stop()  # the app is "not up yet"; the double must still start
    double = await make_double(app_base_url=url, subscribe_on_start=False)
    await server.start()
    try:
        await double.refresh_subscriptions()
        await double.client().post("/v1.0/publish/pubsub/t", json={"n": 1})
        await double.wait_idle()
        assert [e["data"] for e in late.events("/events")] == [{"n": 1}]
    finally:
        await server.stop()
