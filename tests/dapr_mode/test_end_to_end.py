"""Dapr mode end to end: an MCP tool call over HTTP (the SDK's client) → the task in Dapr state →
the Task Event published through the sidecar as the spec shapes it → delivered to the audit
worker's subscription route → the user's history, read back by the API from the shared state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from doable.adapters.dapr.keys import bucket_key, meta_key
from doable.bootstrap import Runtime
from doable.platform import topology
from tests.conftest import auth
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import WorkerFactory, settle, sidecar_client

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SPEC_FIELDS = {"event_type", "task_id", "task_data", "user_id", "timestamp"}


async def call_tool(app: FastAPI, token: str, tool: str, **args: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000", headers=headers
    ) as http:
        async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
            result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content  # type: ignore[return-value]


async def test_an_mcp_call_is_stored_published_as_the_spec_event_and_audited(
    app: FastAPI,
    runtime: Runtime,
    double: DaprDouble,
    start_worker: WorkerFactory,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    await start_worker("audit")

    added = await call_tool(app, token_for("alice"), "add_task", title="Buy milk", priority="high", tags=["home"])
    assert (added["task_id"], added["status"]) == (1, "created")

    # The state, through the sidecar: the task in its bucket, the per-user meta (id counter).
    api = sidecar_client(double, topology.API_APP_ID)
    try:
        bucket = await api.get_state(topology.STATE_STORE, bucket_key("alice", 0))
        meta = await api.get_state(topology.STATE_STORE, meta_key("alice"))
    finally:
        await api.aclose()
    assert bucket is not None and bucket.value["tasks"]["1"]["title"] == "Buy milk"
    assert meta is not None and meta.value["next_id"] == 1

    await settle(runtime, double)

    for topic in (topology.TASK_EVENTS, topology.TASK_UPDATES):
        [message] = double.published_messages(topic)
        assert message.partition_key == "alice"
        event = message.cloud_event
        assert event is not None
        data = event["data"]
        assert event["id"] == data["event_id"]
        pubsub = topology.pubsub_for(topic)  # task-updates: the live component, task-events: the durable one
        assert (event["topic"], event["pubsubname"], event["source"]) == (topic, pubsub, topology.API_APP_ID)
        assert SPEC_FIELDS | {"event_id", "trace_id"} <= set(data)
        assert (data["event_type"], data["task_id"], data["user_id"]) == ("created", 1, "alice")
        assert data["task_data"]["title"] == "Buy milk" and data["task_data"]["priority"] == "high"
        assert data["trace_id"] == TRACE_ID and TRACE_ID in event["traceparent"]

    # Delivered, as a CloudEvent, to the audit worker's route (and the API's live hub).
    [audited] = [a for a in double.deliveries("doable-audit", topology.TASK_EVENTS) if a.outcome == "success"]
    assert audited.path == "/events/audit-task-events" and audited.event is not None
    assert audited.event["id"] == data["event_id"]
    assert [a.outcome for a in double.deliveries(topology.API_APP_ID, topology.TASK_UPDATES)] == ["success"]

    # The audit worker wrote the history to the shared state; the API reads it.
    history = (await http.get("/api/history", headers=auth(token_for("alice")))).json()
    assert [(e["event"], e["task_id"], e["title"]) for e in history["entries"]] == [("created", 1, "Buy milk")]
    assert [e.event_type for e in await runtime.outbox.history("alice", 1)] == ["created"]
