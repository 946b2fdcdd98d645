"""Pub/sub: CloudEvent envelopes, delivery to subscribed routes, retries, dead letters, ordering, faults."""

from __future__ import annotations

import base64

import pytest

from tests.dapr_double import DaprDouble, ManualClock

from .conftest import DoubleFactory
from .recording_app import DROP, RETRY, RecordingApp, Reply, subscription

pytestmark = pytest.mark.asyncio

PUBLISH = "/v1.0/publish/pubsub"


async def subscribed(make_double: DoubleFactory, app: RecordingApp, *subs: dict, **options: object) -> DaprDouble:
    app.subscriptions = list(subs)
    return await make_double(app=app.app, **options)


async def test_publish_wraps_json_in_a_dapr_cloudevent(make_double: DoubleFactory) -> None:
    clock = ManualClock()
    double = await make_double(clock=clock)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await double.client().post(
        f"{PUBLISH}/task-events",
        json={"task_id": 7},
        headers={"traceparent": traceparent, "tracestate": "vendor=1"},
    )
    assert response.status_code == 204

    [event] = double.published("task-events")
    assert event["data"] == {"task_id": 7}
    assert event["datacontenttype"] == "application/json"
    assert event["source"] == "api"
    assert event["type"] == "com.dapr.event.sent"
    assert event["specversion"] == "1.0"
    assert event["topic"] == "task-events"
    assert event["pubsubname"] == "pubsub"
    assert event["time"] == "2030-01-01T00:00:00Z"
    assert event["id"]
    # daprd continues the caller's trace: same trace id, a new span id.
    assert event["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert event["traceparent"] != traceparent
    assert event["traceid"] == event["traceparent"]
    assert event["tracestate"] == "vendor=1"


async def test_publish_without_content_type_is_text_and_metadata_overrides_attributes(double: DaprDouble) -> None:
    response = await double.client().post(
        f"{PUBLISH}/t?metadata.cloudevent.type=task.created&metadata.cloudevent.id=evt-1&metadata.partitionKey=u1",
        content=b"hello",
    )
    assert response.status_code == 204
    [event] = double.published("t")
    assert (event["type"], event["id"], event["datacontenttype"], event["data"]) == (
        "task.created",
        "evt-1",
        "text/plain",
        "hello",
    )
    assert double.published_messages("t")[0].partition_key == "u1"
    assert event["traceparent"].startswith("00-")  # a new trace when none came in


async def test_publish_of_a_cloudevent_keeps_the_callers_envelope(double: DaprDouble) -> None:
    own = {"specversion": "1.0", "id": "mine", "source": "importer", "type": "task.imported", "data": {"a": 1}}
    response = await double.client().post(
        f"{PUBLISH}/t", json=own, headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 204
    [event] = double.published("t")
    assert {k: event[k] for k in own} == own
    assert event["topic"] == "t" and event["pubsubname"] == "pubsub"


async def test_raw_payload_is_published_without_an_envelope(double: DaprDouble) -> None:
    response = await double.client().post(f"{PUBLISH}/t?metadata.rawPayload=true", json={"a": 1})
    assert response.status_code == 204
    [message] = double.published_messages("t")
    assert message.raw and message.data == b'{"a":1}'
    assert double.published("t") == []


async def test_unknown_pubsub_is_404(double: DaprDouble) -> None:
    response = await double.client().post("/v1.0/publish/nope/t", json={})
    assert response.status_code == 404
    assert response.json()["errorCode"] == "ERR_PUBSUB_NOT_FOUND"


async def test_event_is_delivered_to_the_subscribed_route(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("task-events", "/events/tasks"))
    await double.client().post(f"{PUBLISH}/task-events", json={"task_id": 1})
    await double.wait_idle()

    [received] = app.at("/events/tasks")
    assert received.method == "POST"
    assert received.headers["content-type"] == "application/cloudevents+json"
    assert received.json() == double.published("task-events")[0]
    assert received.json()["data"] == {"task_id": 1}
    assert [(a.outcome, a.status_code) for a in double.deliveries("api", "task-events")] == [("success", 200)]


async def test_routing_rules_pick_the_path_by_event_type(make_double: DoubleFactory, app: RecordingApp) -> None:
    rules = [{"match": 'event.type == "task.created"', "path": "/created"}]
    double = await subscribed(make_double, app, subscription("t", rules=rules, default="/other"))
    client = double.client()
    await client.post(f"{PUBLISH}/t?metadata.cloudevent.type=task.created", json={"n": 1})
    await client.post(f"{PUBLISH}/t?metadata.cloudevent.type=task.deleted", json={"n": 2})
    await double.wait_idle()
    assert [e["data"]["n"] for e in app.events("/created")] == [1]
    assert [e["data"]["n"] for e in app.events("/other")] == [2]


async def test_event_matching_no_rule_is_dropped(make_double: DoubleFactory, app: RecordingApp) -> None:
    rules = [{"match": "event.type == 'task.created'", "path": "/created"}]
    double = await subscribed(make_double, app, subscription("t", rules=rules))
    await double.client().post(f"{PUBLISH}/t", json={})
    await double.wait_idle()
    assert [r.path for r in app.received] == ["/dapr/subscribe"]
    assert await double.delivery_statuses() == {"dropped": 1}


async def test_retry_status_redelivers_the_same_event(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    app.script("/events", RETRY, Reply(500), Reply(200, {"status": "SUCCESS"}))
    await double.client().post(f"{PUBLISH}/t", json={"n": 1})
    await double.wait_idle()

    events = app.events("/events")
    assert len(events) == 3
    assert len({e["id"] for e in events}) == 1  # the CloudEvent id is stable across redeliveries
    assert [a.outcome for a in double.deliveries("api", "t")] == ["retry", "retry", "success"]


async def test_exhausted_retries_go_to_the_dead_letter_topic(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(
        make_double,
        app,
        subscription("t", "/events", dead_letter="t-dlq"),
        subscription("t-dlq", "/dead"),
        max_delivery_attempts=3,
    )
    app.script("/events", RETRY, RETRY, RETRY)
    await double.client().post(f"{PUBLISH}/t", json={"n": 1})
    await double.wait_idle()

    assert len(app.at("/events")) == 3
    [dead] = app.events("/dead")
    assert dead["id"] == double.published("t")[0]["id"]  # the original message, unchanged
    assert await double.delivery_statuses() == {"dead_lettered": 1, "acked": 1}


async def test_exhausted_retries_without_dead_letter_topic_give_up(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"), max_delivery_attempts=2)
    app.script("/events", Reply(503), Reply(503))
    await double.client().post(f"{PUBLISH}/t", json={})
    await double.wait_idle()
    assert await double.delivery_statuses() == {"failed": 1}


async def test_drop_status_drops_and_dead_letters_when_configured(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    double = await subscribed(
        make_double,
        app,
        subscription("plain", "/plain"),
        subscription("t", "/events", dead_letter="t-dlq"),
        subscription("t-dlq", "/dead"),
    )
    app.script("/plain", DROP)
    app.script("/events", DROP)
    await double.client().post(f"{PUBLISH}/plain", json={})
    await double.client().post(f"{PUBLISH}/t", json={})
    await double.wait_idle()

    assert len(app.at("/plain")) == 1 and len(app.at("/events")) == 1  # never retried
    assert len(app.at("/dead")) == 1
    assert await double.delivery_statuses() == {"dropped": 1, "dead_lettered": 1, "acked": 1}


async def test_404_drops_without_retry(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    app.script("/events", Reply(404))
    await double.client().post(f"{PUBLISH}/t", json={})
    await double.wait_idle()
    assert len(app.at("/events")) == 1
    assert await double.delivery_statuses() == {"dropped": 1}


async def test_unparsable_2xx_body_counts_as_success(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    app.script("/events", Reply(202, "not an object"))
    await double.client().post(f"{PUBLISH}/t", json={})
    await double.wait_idle()
    assert await double.delivery_statuses() == {"acked": 1}


async def test_messages_of_one_partition_key_arrive_in_order_despite_retries(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    app.script("/events", RETRY, RETRY)  # the first message needs three attempts
    client = double.client()
    for n in range(6):
        sleep = 0.02 if n % 2 == 0 else 0
        await client.post(f"{PUBLISH}/t?metadata.partitionKey=user-1", json={"n": n, "sleep": sleep})
    await double.wait_idle()

    acked = [a.event["data"]["n"] for a in double.deliveries("api", "t") if a.outcome == "success"]
    assert acked == list(range(6))
    assert [e["data"]["n"] for e in app.events("/events")] == [0, 0, 0, 1, 2, 3, 4, 5]


async def test_every_subscribed_app_id_gets_every_message(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    worker = RecordingApp([subscription("t", "/work")])
    await double.register_app("worker", asgi_app=worker.app)
    await double.client("worker").post(f"{PUBLISH}/t", json={"n": 1})
    await double.wait_idle()
    assert len(app.at("/events")) == 1 and len(worker.at("/work")) == 1
    assert worker.events("/work")[0]["source"] == "worker"


async def test_failed_publish_stores_nothing(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    double.fail_next_publishes(1, status=503)
    client = double.client()
    failed = await client.post(f"{PUBLISH}/t", json={"n": 1})
    assert failed.status_code == 503
    assert failed.json()["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert (await client.post(f"{PUBLISH}/t", json={"n": 2})).status_code == 204
    await double.wait_idle()
    assert [e["data"]["n"] for e in app.events("/events")] == [2]


async def test_duplicate_delivery_resends_the_same_event(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    double.duplicate_deliveries(1, topic="t")
    await double.client().post(f"{PUBLISH}/t", json={"n": 1})
    await double.client().post(f"{PUBLISH}/t", json={"n": 2})
    await double.wait_idle()
    ids = [e["id"] for e in app.events("/events")]
    assert len(ids) == 3 and len(set(ids)) == 2
    assert sum(a.duplicate for a in double.deliveries("api", "t")) == 1


async def test_lost_delivery_is_retried(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    double.drop_deliveries(2, app_id="api")
    await double.client().post(f"{PUBLISH}/t", json={"n": 1})
    await double.wait_idle()
    assert [(a.outcome, a.status_code) for a in double.deliveries("api")] == [
        ("lost", None),
        ("lost", None),
        ("success", 200),
    ]
    assert len(app.at("/events")) == 1


async def test_paused_delivery_holds_messages_until_resumed(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"))
    double.pause_delivery()
    await double.client().post(f"{PUBLISH}/t", json={"n": 1})
    with pytest.raises(TimeoutError, match="paused"):
        await double.wait_idle(timeout=0.2)
    assert app.at("/events") == []
    double.resume_delivery()
    await double.wait_idle()
    assert len(app.at("/events")) == 1


async def test_expired_message_is_not_delivered(make_double: DoubleFactory, app: RecordingApp) -> None:
    clock = ManualClock()
    double = await subscribed(make_double, app, subscription("t", "/events"), clock=clock)
    double.pause_delivery()
    await double.client().post(f"{PUBLISH}/t?metadata.ttlInSeconds=10", json={})
    assert double.published("t")[0]["expiration"] == "2030-01-01T00:00:10Z"
    clock.advance(11)
    double.resume_delivery()
    await double.wait_idle()
    assert app.at("/events") == []
    assert [a.outcome for a in double.deliveries()] == ["expired"]


async def test_raw_payload_subscription_receives_data_base64(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/raw", metadata={"rawPayload": "true"}))
    await double.client().post(f"{PUBLISH}/t?metadata.rawPayload=true", content=b"\x00binary")
    await double.wait_idle()
    [event] = app.events("/raw")
    assert base64.b64decode(event["data_base64"]) == b"\x00binary"
    assert event["datacontenttype"] == "application/octet-stream"


async def test_app_token_is_sent_on_deliveries(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await subscribed(make_double, app, subscription("t", "/events"), app_token="app-secret")
    await double.client().post(f"{PUBLISH}/t", json={})
    await double.wait_idle()
    assert app.at("/events")[0].headers["dapr-api-token"] == "app-secret"
    assert app.at("/dapr/subscribe")[0].headers["dapr-api-token"] == "app-secret"
