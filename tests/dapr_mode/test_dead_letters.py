"""Dead letters in Dapr mode: what a subscriber's sidecar forwards to the `dead-letter` topic is
consumed by the audit worker, recorded once in the state store, counted once in
`doable_events_dead_lettered_total` and logged, and never sent back to the topic."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

import httpx2
import structlog
from prometheus_client import REGISTRY

from doable.adapters.dapr.delivery_records import dead_letter_key
from doable.platform import topology
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import APP_TOKEN, WorkerFactory, sidecar_client
from workers.dead_letters import SIDECAR_REASON

AUDIT = topology.WORKER_APP_IDS["audit"]
ROUTE = f"/events/audit-{topology.DEAD_LETTER}"
APP_HEADERS = {"dapr-api-token": APP_TOKEN}


def dead_lettered(topic: str, subscription: str = "unknown") -> float:
    return (
        REGISTRY.get_sample_value("doable_events_dead_lettered_total", {"topic": topic, "subscription": subscription})
        or 0.0
    )


def all_dead_lettered() -> float:
    """Every series of the counter: a dead letter counted anywhere else would show here."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "doable_events_dead_lettered"
        for sample in metric.samples
        if sample.name == "doable_events_dead_lettered_total"
    )


async def publish_malformed_task_event(double: DaprDouble, event_id: str) -> None:
    """As the API would publish it, but not a task event: every task-events subscriber drops it."""
    sidecar = sidecar_client(double, topology.API_APP_ID)
    try:
        await sidecar.publish(
            topology.PUBSUB,
            topology.TASK_EVENTS,
            {"event_type": "exploded", "user_id": "alice", "title": "secret title"},
            partition_key="alice",
            event_id=event_id,
            event_type="doable.task-events.exploded",
        )
    finally:
        await sidecar.aclose()


async def stored(double: DaprDouble, message_id: str, subscription: str = "unknown") -> dict[str, Any] | None:
    key = quote(dead_letter_key(subscription, message_id), safe="")
    response = await double.client(AUDIT).get(f"/v1.0/state/{topology.STATE_STORE}/{key}")
    return response.json() if response.status_code == 200 and response.content else None


async def test_a_malformed_task_event_ends_as_one_recorded_counted_and_logged_dead_letter(
    double: DaprDouble, start_worker: WorkerFactory
) -> None:
    await start_worker("audit")
    before, before_all = dead_lettered(topology.TASK_EVENTS), all_dead_lettered()
    with structlog.testing.capture_logs() as logs:
        await publish_malformed_task_event(double, "bad-1")
        await double.wait_idle()

    # The audit worker gave up on it (RETRY, never DROP, from a bulk subscriber, until the chart's
    # 10 delivery retries ran out), its sidecar forwarded it, the audit worker recorded it.
    assert [a.outcome for a in double.deliveries(AUDIT, topology.TASK_EVENTS)] == ["retry"] * 11
    assert [a.outcome for a in double.deliveries(AUDIT, topology.DEAD_LETTER)] == ["success"]
    [forwarded] = double.published(topology.DEAD_LETTER)
    assert forwarded["id"] == "bad-1" and forwarded["topic"] == topology.TASK_EVENTS  # Dapr forwards it unchanged

    record = await stored(double, "bad-1")
    assert record is not None
    assert record["reason"] == SIDECAR_REASON
    assert (record["subscription"], record["topic"], record["message_id"], record["key"]) == (
        "unknown",
        topology.TASK_EVENTS,
        "bad-1",
        "alice",
    )
    assert record["data"]["event_type"] == "exploded"

    # Counted once overall: at the dead-letter consumer, not also at the DROP.
    assert dead_lettered(topology.TASK_EVENTS) - before == 1
    assert all_dead_lettered() - before_all == 1
    [logged] = [e for e in logs if e["event"] == "events.dead_lettered"]
    assert logged["message_id"] == "bad-1" and logged["original_topic"] == topology.TASK_EVENTS
    assert logged["reason"] == SIDECAR_REASON and logged["source"] == topology.API_APP_ID
    assert "secret title" not in repr(logs)  # no payload in the logs


async def test_a_redelivered_dead_letter_and_a_second_subscribers_copy_are_recorded_and_counted_once(
    double: DaprDouble, start_worker: WorkerFactory
) -> None:
    await start_worker("audit")
    await start_worker("recurrence")  # a second task-events subscriber: its sidecar forwards a copy too
    double.duplicate_deliveries(5, app_id=AUDIT, topic=topology.DEAD_LETTER)
    before, before_all = dead_lettered(topology.TASK_EVENTS), all_dead_lettered()
    await publish_malformed_task_event(double, "bad-2")
    await double.wait_idle()

    assert [a.outcome for a in double.deliveries(topic=topology.TASK_EVENTS)] == ["retry"] * 22
    assert [e["id"] for e in double.published(topology.DEAD_LETTER)] == ["bad-2", "bad-2"]
    dead = double.deliveries(AUDIT, topology.DEAD_LETTER)
    assert len(dead) == 4 and sum(a.duplicate for a in dead) == 2  # two copies, each delivered twice
    assert all(a.outcome == "success" for a in dead)
    assert (await stored(double, "bad-2")) is not None
    assert dead_lettered(topology.TASK_EVENTS) - before == 1
    assert all_dead_lettered() - before_all == 1


async def test_a_malformed_dead_letter_is_recorded_and_answered_success(
    double: DaprDouble, start_worker: WorkerFactory
) -> None:
    await start_worker("audit")
    before = dead_lettered("unknown")
    # A CloudEvent whose data is not JSON, published straight to the dead-letter topic.
    envelope = {"specversion": "1.0", "id": "bad-3", "source": "x", "type": "t", "data": "{not json"}
    # As a subscriber's sidecar: the pubsub component's publishingScopes let only those publish here.
    published = await double.client(topology.WORKER_APP_IDS["reminders"]).post(
        f"/v1.0/publish/{topology.PUBSUB}/{topology.DEAD_LETTER}",
        content=json.dumps(envelope),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert published.status_code == 204, published.text
    await double.wait_idle()

    assert [a.outcome for a in double.deliveries(AUDIT, topology.DEAD_LETTER)] == ["success"]
    assert len(double.published(topology.DEAD_LETTER)) == 1  # nothing went back to the topic
    record = await stored(double, "bad-3")
    assert record is not None and record["reason"].startswith("malformed dead letter:")
    assert record["topic"] == "unknown" and record["data"] == {}
    assert dead_lettered("unknown") - before == 1


async def test_not_even_a_cloud_event_is_answered_success_and_recorded_by_its_digest(
    double: DaprDouble, start_worker: WorkerFactory
) -> None:
    app = await start_worker("audit")
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        answers = [(await http.post(ROUTE, content=b"\x00 not json", headers=APP_HEADERS)).json() for _ in range(2)]
    assert answers == [{"status": "SUCCESS"}] * 2
    record = await stored(double, "sha256:" + hashlib.sha256(b"\x00 not json").hexdigest())
    assert record is not None and record["reason"].startswith("malformed dead letter:")


async def test_the_audit_app_subscribes_to_the_dead_letter_topic_without_one_of_its_own(
    double: DaprDouble, start_worker: WorkerFactory
) -> None:
    app = await start_worker("audit")
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        subscriptions = (await http.get("/dapr/subscribe", headers=APP_HEADERS)).json()
    by_topic = {s["topic"]: s for s in subscriptions}
    assert by_topic[topology.DEAD_LETTER] == {
        "pubsubname": topology.PUBSUB,
        "topic": topology.DEAD_LETTER,
        "routes": {"default": ROUTE},
    }
    assert by_topic[topology.TASK_EVENTS]["deadLetterTopic"] == topology.DEAD_LETTER
    assert topology.DEAD_LETTER in topology.SUBSCRIPTIONS[AUDIT]
