"""The double's pub/sub as daprd + the Kafka component behave: partitions, retries, groups, scopes.

Sources (dapr/dapr v1.16.19, v1.17.13, v1.18.3; dapr/components-contrib v1.16.13, v1.17.8, v1.18.4):
`common/component/kafka/consumer.go` (ConsumeClaim: serial per partition, component retries),
`common/component/kafka/producer.go` + sarama's hash partitioner (key -> partition),
`common/component/kafka/metadata.go` (consumerGroup / consumerID),
`pkg/runtime/subscription/subscription.go` (inbound policy, dead letters),
`pkg/runtime/subscription/postman/http/http.go` (SUCCESS / RETRY / DROP / 404),
`pkg/runtime/meta/meta.go` ({podName}, {appID} tags), `pkg/scopes/scopes.go` and
`pkg/runtime/pubsub/adapter.go` (topic scopes), `pkg/api/errors/pubsub.go` (403 body).
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.dapr_double import DaprDouble
from tests.dapr_double.broker import (
    ComponentBackOff,
    Outgoing,
    PartitionError,
    choose_partition,
    fnv1a_32,
    partition_for_key,
    range_assignment,
)
from tests.dapr_double.manifests import Manifests
from tests.dapr_double.resiliency import VirtualTimer

from .conftest import DoubleFactory
from .recording_app import RETRY, RecordingApp, Reply, subscription

pytestmark = pytest.mark.asyncio

PUBLISH = "/v1.0/publish/pubsub"
PARTITIONS = 3


def keys_on(partition: int, count: int = 3, *, prefix: str = "user-") -> list[str]:
    """Keys sarama's hash partitioner sends to `partition` of a 3-partition topic."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        key = f"{prefix}{n}"
        if partition_for_key(key, PARTITIONS) == partition:
            found.append(key)
        n += 1
    return found


def manifests(
    *,
    pubsub_metadata: dict[str, str] | None = None,
    inbound_retry: dict[str, Any] | None = None,
    outbound_retry: dict[str, Any] | None = None,
    extra_components: str = "",
) -> Manifests:
    """A Kafka `pubsub` component (plus extras) and, optionally, a Resiliency CR targeting it."""
    meta = {"brokers": "redpanda:9092", "authType": "none", **(pubsub_metadata or {})}
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "pubsub"},
            "spec": {
                "type": "pubsub.kafka",
                "version": "v1",
                "metadata": [{"name": k, "value": v} for k, v in meta.items()],
            },
        }
    ]
    targets: dict[str, Any] = {}
    retries: dict[str, Any] = {}
    if inbound_retry is not None:
        retries["inbound"] = inbound_retry
        targets.setdefault("pubsub", {})["inbound"] = {"retry": "inbound"}
    if outbound_retry is not None:
        retries["outbound"] = outbound_retry
        targets.setdefault("pubsub", {})["outbound"] = {"retry": "outbound"}
    if targets:
        docs.append(
            {
                "apiVersion": "dapr.io/v1alpha1",
                "kind": "Resiliency",
                "metadata": {"name": "res"},
                "spec": {"policies": {"retries": retries}, "targets": {"components": targets}},
            }
        )
    text = "\n---\n".join(json.dumps(d) for d in docs)
    return Manifests.from_yaml(text + ("\n---\n" + extra_components if extra_components else ""))


async def kafka_double(
    make_double: DoubleFactory, app: Any, subs: list[dict], m: Manifests, **options: Any
) -> DaprDouble:
    if isinstance(app, RecordingApp):
        app.subscriptions = subs
        asgi = app.app
    else:
        app.subscriptions = subs
        asgi = app
    options.setdefault("resiliency_timer", VirtualTimer())
    return await make_double(app=asgi, manifests=m, **options)


class GatedApp:
    """A subscriber whose handler can be held (to show what else is delivered meanwhile).

    Events whose data has `"gate": true` wait until `open()`; replies come from `script(n, ...)`.
    """

    def __init__(self) -> None:
        self.subscriptions: list[dict[str, Any]] = []
        self.received: list[tuple[str, int]] = []  # (path, n) in arrival order
        self.gate = asyncio.Event()
        self.holding = asyncio.Event()
        self._arrived = asyncio.Event()
        self._replies: dict[int, list[int | str]] = {}
        self.app = Starlette(
            routes=[Route("/dapr/subscribe", self._subscribe), Route("/{path:path}", self._event, methods=["POST"])]
        )

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return self.app(scope, receive, send)

    def script(self, n: int, *replies: int | str) -> None:
        """Replies to message `n`: "RETRY"/"DROP"/"SUCCESS" (200 + status) or an HTTP status."""
        self._replies[n] = list(replies)

    async def _subscribe(self, request: Request) -> Response:
        return JSONResponse(self.subscriptions)

    async def _event(self, request: Request) -> Response:
        event = json.loads(await request.body())
        data = event.get("data") or {}
        n = int(data.get("n", -1))
        self.received.append((request.url.path, n))
        self._arrived.set()
        if data.get("gate"):
            self.holding.set()
            await self.gate.wait()
        replies = self._replies.get(n)
        reply = replies.pop(0) if replies else "SUCCESS"
        if isinstance(reply, int):
            return Response(status_code=reply)
        return JSONResponse({"status": reply})

    async def wait_for(self, n: int, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until message `n` has arrived (at most `timeout` seconds)."""
        async with asyncio.timeout(timeout):
            while n not in [m for _, m in self.received]:
                self._arrived.clear()
                await self._arrived.wait()

    def at(self, path: str) -> list[int]:
        return [n for p, n in self.received if p == path]


async def publish(
    double: DaprDouble, n: int, key: str | None, *, topic: str = "t", gate: bool = False, app_id: str | None = None
) -> None:
    query = f"?metadata.partitionKey={key}" if key is not None else ""
    response = await double.client(app_id).post(f"{PUBLISH}/{topic}{query}", json={"n": n, "gate": gate})
    assert response.status_code == 204, response.text


def acked(double: DaprDouble, app_id: str = "api", topic: str = "t") -> list[int]:
    return [
        a.event["data"]["n"] for a in double.deliveries(app_id, topic) if a.outcome == "success" and not a.duplicate
    ]


# -- partitions -----------------------------------------------------------------------------------


async def test_keys_map_to_partitions_as_saramas_hash_partitioner() -> None:
    """sarama NewHashPartitioner: FNV-1a 32 of the key, `int32(h) % n`, negated when negative."""
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968
    for key in ("user-1", "alice", "", "ü"):
        h = fnv1a_32(key.encode())
        signed = h - (1 << 32) if h >= 1 << 31 else h
        go_rem = abs(signed) % 3 * (1 if signed >= 0 else -1)  # Go's truncated remainder
        assert partition_for_key(key, 3) == abs(go_rem)
    # partitionKey and __key are both the message key (producer.go); an empty key is still a key.
    rng = random.Random(1)
    assert choose_partition({"partitionKey": "alice"}, 3, rng) == partition_for_key("alice", 3)
    assert choose_partition({"__key": "alice"}, 3, rng) == partition_for_key("alice", 3)
    assert choose_partition({"partitionKey": ""}, 3, rng) == partition_for_key("", 3)
    # No key: a random partition (sarama's random partitioner), so every partition gets some.
    assert {choose_partition({}, 3, rng) for _ in range(200)} == {0, 1, 2}
    # v1.18 partitioner.go: partitionNumber picks the partition; out of range is a publish error.
    assert choose_partition({"partitionNumber": "2", "partitionKey": "alice"}, 3, rng) == 2
    with pytest.raises(PartitionError, match="out of range, topic has 3 partitions"):
        choose_partition({"partitionNumber": "3"}, 3, rng)
    with pytest.raises(PartitionError, match="invalid partitionNumber"):
        choose_partition({"partitionNumber": "x"}, 3, rng)


async def test_range_assignment_and_component_back_off_defaults() -> None:
    """sarama's range strategy; dapr/kit retry.DefaultConfig (constant 5s, for ever); ms integers."""
    assert range_assignment(3, ["a", "b"]) == {0: "a", 1: "a", 2: "b"}
    assert range_assignment(3, ["a", "b", "c", "d"]) == {0: "a", 1: "b", 2: "c"}
    default = ComponentBackOff.from_metadata({})
    assert (default.policy, default.duration, default.max_retries) == ("constant", 5.0, -1)
    assert default.delay(10_000, 0.0, random.Random()) == 5.0
    custom = ComponentBackOff.from_metadata({"backoffDuration": "250", "backOffMaxRetries": "2"})
    rng = random.Random()
    assert [custom.delay(n, 0.0, rng) for n in (1, 2, 3)] == [0.25, 0.25, None]


async def test_publish_records_the_partition_of_the_key(double: DaprDouble) -> None:
    [key] = keys_on(2, 1)
    await publish(double, 1, key)
    assert double.published_messages("t")[0].partition == 2
    response = await double.client().post(f"{PUBLISH}/t?metadata.partitionNumber=7", json={})
    assert response.status_code == 500
    assert response.json()["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert "partition number 7 is out of range, topic has 3 partitions" in response.json()["message"]


async def test_a_held_message_blocks_its_partition_but_not_the_others(make_double: DoubleFactory) -> None:
    """consumer.go ConsumeClaim: one message of a partition at a time, so a message being handled
    (or retried) holds every key of its partition; other partitions go on."""
    app = GatedApp()
    app.subscriptions = [subscription("t", "/events")]
    double = await make_double(app=app)
    first, same_partition = keys_on(0, 2)
    [other_partition] = keys_on(1, 1)
    app.script(0, "RETRY")  # after the gate opens, one RETRY, then success
    await publish(double, 0, first, gate=True)
    await publish(double, 1, same_partition)
    await publish(double, 2, other_partition)
    await app.holding.wait()
    await app.wait_for(2)  # another partition: delivered while 0 is held
    assert app.at("/events") == [0, 2]
    app.gate.set()
    await double.wait_idle()
    assert app.at("/events") == [0, 2, 0, 1]  # 1 waited for 0's retry, though its key differs
    assert acked(double) == [2, 0, 1]


async def test_order_per_partition_survives_retries(make_double: DoubleFactory, app: RecordingApp) -> None:
    """Messages of different keys on one partition are acknowledged in offset order, retries included."""
    double = await make_double(app=app.app)
    app.subscriptions = [subscription("t", "/events")]
    await double.refresh_subscriptions()
    app.script("/events", RETRY, Reply(503))
    keys = keys_on(1, 3)
    for n in range(6):
        await publish(double, n, keys[n % 3])
    await double.wait_idle()
    assert acked(double) == list(range(6))
    assert {a.partition for a in double.deliveries("api", "t")} == {1}


# -- retries --------------------------------------------------------------------------------------


async def test_inbound_policy_retries_then_dead_letters(make_double: DoubleFactory, app: RecordingApp) -> None:
    """subscription.go: the app call runs under ComponentInboundPolicy; when it gives up the message
    is published to the dead-letter topic (as the subscriber) and acknowledged."""
    m = manifests(inbound_retry={"policy": "constant", "duration": "10ms", "maxRetries": 2})
    subs = [subscription("t", "/events", dead_letter="t-dlq"), subscription("t-dlq", "/dead")]
    double = await kafka_double(make_double, app, subs, m)
    app.script("/events", RETRY, Reply(500), RETRY)
    [key] = keys_on(0, 1)
    await publish(double, 1, key)
    await publish(double, 2, key)
    await double.wait_idle()

    assert [(a.outcome, a.attempt) for a in double.deliveries("api", "t") if a.event["data"]["n"] == 1] == [
        ("retry", 1),
        ("retry", 2),
        ("retry", 3),
    ]
    [dead] = app.events("/dead")
    assert dead["id"] == double.published("t")[0]["id"]
    assert acked(double) == [2]  # the next message of the partition waited for the dead letter
    assert await double.delivery_statuses() == {"dead_lettered": 1, "acked": 2}


async def test_inbound_matching_filters_http_statuses_but_not_retry(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    """postman/http.go wraps a non-2xx in resiliency.NewCodeError, so `matching.httpStatusCodes`
    decides; a RETRY status is a plain retriable error, always retried (pkg/resiliency/retry.go)."""
    retry = {"policy": "constant", "duration": "1ms", "maxRetries": 3, "matching": {"httpStatusCodes": "503"}}
    subs = [subscription("t", "/events", dead_letter="t-dlq"), subscription("t-dlq", "/dead")]
    double = await kafka_double(make_double, app, subs, manifests(inbound_retry=retry))
    app.script("/events", Reply(500), RETRY, Reply(503))
    await publish(double, 1, "k")  # 500: not in matching -> no retry -> dead letter
    await publish(double, 2, "k")  # RETRY, 503 (both retried), then success
    await double.wait_idle()
    assert [(a.event["data"]["n"], a.status_code) for a in double.deliveries("api", "t")] == [
        (1, 500),
        (2, 200),
        (2, 503),
        (2, 200),
    ]
    assert len(app.at("/dead")) == 1


async def test_404_and_drop_are_not_retried_by_the_inbound_policy(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    """postman/http.go: 404 and DROP are ErrMessageDropped: dead-lettered if set, never retried."""
    m = manifests(inbound_retry={"policy": "constant", "duration": "10ms", "maxRetries": 5})
    subs = [subscription("t", "/events", dead_letter="t-dlq"), subscription("t-dlq", "/dead"), subscription("u", "/u")]
    double = await kafka_double(make_double, app, subs, m)
    app.script("/events", Reply(404))
    app.script("/u", Reply(200, {"status": "DROP"}))
    await publish(double, 1, "k")
    await publish(double, 2, "k", topic="u")
    await double.wait_idle()
    assert len(app.at("/events")) == 1 and len(app.at("/u")) == 1
    assert len(app.at("/dead")) == 1
    assert await double.delivery_statuses() == {"dead_lettered": 1, "dropped": 1, "acked": 1}


async def test_without_dead_letter_topic_the_component_retries_for_ever(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    """No dead-letter topic: the error goes back to the Kafka component, whose default back-off
    (consumeRetryEnabled, maxRetries -1) calls the handler again, each time under the inbound
    policy, while the partition waits. Bounded here by the app, which finally succeeds."""
    m = manifests(
        pubsub_metadata={"backOffDuration": "5ms"},
        inbound_retry={"policy": "constant", "duration": "1ms", "maxRetries": 1},
    )
    double = await kafka_double(make_double, app, [subscription("t", "/events")], m, max_delivery_attempts=2)
    app.script("/events", *([RETRY] * 11))
    [key] = keys_on(2, 1)
    await publish(double, 1, key)
    await publish(double, 2, key)
    await double.wait_idle(timeout=10)
    first = [a.outcome for a in double.deliveries("api", "t") if a.event["data"]["n"] == 1]
    assert first == ["retry"] * 11 + ["success"]  # far past max_delivery_attempts=2
    assert acked(double) == [1, 2]
    assert await double.delivery_statuses() == {"acked": 2}


async def test_when_the_component_back_off_gives_up_the_message_is_skipped(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    """consumer.go: after "Too many failed attempts" the offset is not marked but the claim moves
    on; the next message's MarkMessage commits past it (recorded as "failed")."""
    m = manifests(
        pubsub_metadata={"backOffDuration": "1ms", "backOffMaxRetries": "2"},
        inbound_retry={"policy": "constant", "duration": "1ms", "maxRetries": 1},
    )
    double = await kafka_double(make_double, app, [subscription("t", "/events")], m)
    app.script("/events", *([Reply(500)] * 6))
    await publish(double, 1, "k")
    await publish(double, 2, "k")
    await double.wait_idle()
    assert [a.event["data"]["n"] for a in double.deliveries("api", "t")] == [1] * 6 + [2]  # (1+1) x (2+1)
    assert await double.delivery_statuses() == {"failed": 1, "acked": 1}


async def test_consume_retry_disabled_means_one_handler_call(make_double: DoubleFactory, app: RecordingApp) -> None:
    """consumeRetryEnabled=false: doCallback once (the inbound policy still retries inside it)."""
    m = manifests(
        pubsub_metadata={"consumeRetryEnabled": "false"},
        inbound_retry={"policy": "constant", "duration": "1ms", "maxRetries": 2},
    )
    double = await kafka_double(make_double, app, [subscription("t", "/events")], m)
    app.script("/events", RETRY, RETRY, RETRY)
    await publish(double, 1, "k")
    await double.wait_idle()
    assert len(app.at("/events")) == 3
    assert await double.delivery_statuses() == {"failed": 1}


async def test_no_resiliency_and_no_manifests_keeps_the_simple_policy(
    make_double: DoubleFactory, app: RecordingApp
) -> None:
    double = await make_double(app=app.app, max_delivery_attempts=3)
    app.subscriptions = [subscription("t", "/events")]
    await double.refresh_subscriptions()
    app.script("/events", RETRY, RETRY, RETRY)
    await publish(double, 1, "k")
    await double.wait_idle()
    assert len(app.at("/events")) == 3
    assert await double.delivery_statuses() == {"failed": 1}


# -- consumer groups ------------------------------------------------------------------------------


async def test_replicas_of_one_app_id_compete_for_partitions(make_double: DoubleFactory) -> None:
    """No consumerGroup: consumerID defaults to the app id, so the pods of one app id form one
    group and split the topic's partitions (range strategy): each message reaches one pod."""
    pod0, pod1 = RecordingApp([subscription("t", "/events")]), RecordingApp([subscription("t", "/events")])
    double = await make_double(manifests=manifests(), resiliency_timer=VirtualTimer())
    await double.register_app("worker", asgi_app=pod0.app, pod="worker-a")
    await double.register_app("worker", asgi_app=pod1.app, pod="worker-b")
    n = 0
    for partition in range(PARTITIONS):
        for key in keys_on(partition, 2):
            await publish(double, n, key)
            n += 1
    await double.wait_idle()
    got0 = sorted(e["data"]["n"] for e in pod0.events("/events"))
    got1 = sorted(e["data"]["n"] for e in pod1.events("/events"))
    assert sorted(got0 + got1) == list(range(6))
    assert (got0, got1) == ([0, 1, 2, 3], [4, 5])  # worker-a: partitions 0 and 1, worker-b: 2
    assert {a.pod for a in double.deliveries("worker") if a.partition == 2} == {"worker-b"}


async def test_a_podname_consumer_group_gives_every_pod_every_message(make_double: DoubleFactory) -> None:
    """chart live-pubsub: consumerID "{podName}" (meta.go resolves it per sidecar) -> a group per pod."""
    pod0, pod1 = RecordingApp([subscription("t", "/events")]), RecordingApp([subscription("t", "/events")])
    m = manifests(pubsub_metadata={"consumerID": "{podName}"})
    double = await make_double(manifests=m, resiliency_timer=VirtualTimer())
    await double.register_app("api", asgi_app=pod0.app, pod="api-a")
    await double.register_app("api", asgi_app=pod1.app, pod="api-b")
    for n in range(4):
        await publish(double, n, f"user-{n}")
    await double.wait_idle()
    assert sorted(e["data"]["n"] for e in pod0.events("/events")) == [0, 1, 2, 3]
    assert sorted(e["data"]["n"] for e in pod1.events("/events")) == [0, 1, 2, 3]


async def test_a_shared_consumer_group_splits_messages_between_app_ids(make_double: DoubleFactory) -> None:
    """A fixed consumerGroup (metadata.go: it wins over consumerID) puts two app ids in one group."""
    a, b = RecordingApp([subscription("t", "/a")]), RecordingApp([subscription("t", "/b")])
    double = await make_double(
        manifests=manifests(pubsub_metadata={"consumerGroup": "shared"}), resiliency_timer=VirtualTimer()
    )
    await double.register_app("app-a", asgi_app=a.app)
    await double.register_app("app-b", asgi_app=b.app)
    for n in range(PARTITIONS):
        await publish(double, n, keys_on(n, 1)[0])
    await double.wait_idle()
    assert len(a.at("/a")) + len(b.at("/b")) == PARTITIONS
    assert a.at("/a") and b.at("/b")


# -- scopes ---------------------------------------------------------------------------------------


SCOPED = {
    "allowedTopics": "t,t-dlq,other",
    "publishingScopes": "api=t;worker=t-dlq",
    "subscriptionScopes": "worker=t;api=",
}


async def test_publishing_scopes_refuse_with_daprds_403(make_double: DoubleFactory) -> None:
    """publisher.go NotAllowedError -> http.go PublishForbidden: 403 ERR_PUBSUB_FORBIDDEN."""
    double = await make_double(manifests=manifests(pubsub_metadata=SCOPED), resiliency_timer=VirtualTimer())
    client = double.client("api")
    assert (await client.post(f"{PUBLISH}/t", json={})).status_code == 204
    for topic in ("other", "not-allowed"):  # not in api's publishingScopes / not in allowedTopics
        response = await client.post(f"{PUBLISH}/{topic}", json={})
        assert response.status_code == 403
        body = response.json()
        assert body["errorCode"] == "ERR_PUBSUB_FORBIDDEN"
        assert body["message"] == f"topic {topic} is not allowed for app id api"
        assert body["details"][0]["reason"] == "DAPR_PUBSUB_FORBIDDEN"
        assert body["details"][0]["metadata"] == {
            "topic": topic,
            "error": f"topic {topic} is not allowed for app id api",
        }
    # An app with no publishingScopes entry may publish to any allowed topic.
    assert (await double.client("stranger").post(f"{PUBLISH}/other", json={})).status_code == 204
    assert [m.topic for m in double.published_messages()] == ["t", "other"]


async def test_subscriptions_outside_the_scopes_are_ignored(make_double: DoubleFactory) -> None:
    """subscription.go New fails for a topic outside subscriptionScopes/allowedTopics: never started."""
    api = RecordingApp([subscription("t", "/events")])  # "api=" : api may subscribe to nothing
    worker = RecordingApp([subscription("t", "/events"), subscription("nope", "/nope")])
    double = await make_double(manifests=manifests(pubsub_metadata=SCOPED), resiliency_timer=VirtualTimer())
    await double.register_app("api", asgi_app=api.app)
    await double.register_app("worker", asgi_app=worker.app)
    await publish(double, 1, "k", app_id="api")
    assert (await double.client("stranger").post(f"{PUBLISH}/nope", json={})).status_code == 403
    await double.wait_idle()
    assert api.at("/events") == [] and len(worker.at("/events")) == 1
    assert await double.delivery_statuses() == {"acked": 1}


async def test_a_dead_letter_outside_the_publishing_scopes_is_not_sent(make_double: DoubleFactory) -> None:
    """sendToDeadLetter publishes through the adapter as the subscriber, so publishingScopes
    apply; refused, the error goes back to the component, which keeps retrying."""
    scoped = {**SCOPED, "publishingScopes": "api=t;worker=t"}  # the chart adds the DLQ topic; here it is missing
    worker = RecordingApp([subscription("t", "/events", dead_letter="t-dlq")])
    m = manifests(pubsub_metadata={**scoped, "backOffDuration": "1ms", "backOffMaxRetries": "1"})
    double = await make_double(manifests=m, resiliency_timer=VirtualTimer())
    await double.register_app("worker", asgi_app=worker.app)
    worker.script("/events", RETRY, RETRY)
    await publish(double, 1, "k", app_id="api")
    await double.wait_idle()
    assert double.published_messages("t-dlq") == []
    assert len(worker.at("/events")) == 2
    assert await double.delivery_statuses() == {"failed": 1}


async def test_publish_runs_under_the_outbound_policy(make_double: DoubleFactory) -> None:
    """publisher.go: the component's Publish runs under ComponentOutboundPolicy (once per call)."""
    m = manifests(outbound_retry={"policy": "constant", "duration": "10ms", "maxRetries": 2})
    double = await make_double(manifests=m, resiliency_timer=VirtualTimer())
    double.fail_next_publishes(2)
    assert (await double.client().post(f"{PUBLISH}/t", json={"n": 1})).status_code == 204
    assert len(double.published_messages("t")) == 1
    double.fail_next_publishes(3, status=503)
    response = await double.client().post(f"{PUBLISH}/t", json={"n": 2})
    assert response.status_code == 503 and response.json()["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"


async def test_concurrent_producers_append_each_partition_as_one_log(double: DaprDouble) -> None:
    """A partition is a log: however producers interleave (bulk publishes of several partitions
    at once), its offsets run 0, 1, 2, ... without gaps, in the order its messages were stored,
    a producer's messages stay in its order, and a message the partitioner refuses fails alone."""
    broker = double._pubsub._broker
    rng = random.Random(7)
    keys = [k for p in range(PARTITIONS) for k in keys_on(p, 2)]

    async def producer(n: int) -> list[Any]:
        batch = [
            Outgoing(json.dumps({"producer": n, "i": i}).encode(), {"partitionKey": rng.choice(keys)})
            for i in range(rng.randint(1, 12))
        ]
        if n == 3:
            batch.insert(1, Outgoing(b"{}", {"partitionNumber": "9"}))
        stored = await broker.append_many(
            pubsub="pubsub", topic="t", messages=batch, subscribers=["app"],
            now=datetime.now(UTC), not_before=datetime.now(UTC),
        )  # fmt: skip
        return list(zip(batch, stored, strict=True))

    results = [r for rs in await asyncio.gather(*(producer(n) for n in range(8))) for r in rs]
    refused = [stored for _, stored in results if isinstance(stored, PartitionError)]
    assert len(refused) == 1 and "out of range" in str(refused[0])
    pool = broker._pg.pool
    rows = await pool.fetch(
        f"SELECT seq, partition, partition_offset, data FROM {broker._pg.table('messages')} ORDER BY seq"
    )
    assert len(rows) == len(results) - 1
    for partition in range(PARTITIONS):
        mine = [r for r in rows if r["partition"] == partition]
        assert [r["partition_offset"] for r in mine] == list(range(len(mine)))  # in seq order, no gap
    for n in range(8):
        order = [json.loads(r["data"])["i"] for r in rows if json.loads(r["data"]).get("producer") == n]
        assert order == sorted(order)
