"""Bulk subscribe and bulk publish, as daprd + the Kafka component implement them.

Sources (dapr/dapr v1.16.19, v1.17.13, v1.18.3; dapr/components-contrib v1.16.13, v1.17.8, v1.18.4):
`common/component/kafka/consumer.go` (bulk ConsumeClaim: count / ticker flushes, marking, component
retry of the whole batch), `pkg/runtime/subscription/bulksubscription.go`, `bulkresiliency.go`,
`postman/http/http.go` DeliverBulk, `pkg/runtime/pubsub/bulksubscribe_events.go`,
`pkg/api/http/http.go` onBulkPublish, `pkg/runtime/pubsub/bulkpublish_resiliency.go`,
`common/component/kafka/producer.go` BulkPublish. See the double's bulk_subscribe.py / bulk_publish.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.dapr_double import DaprDouble
from tests.dapr_double.subscriptions import parse_subscriptions

from .conftest import DoubleFactory
from .test_kafka_pubsub import keys_on, manifests

pytestmark = pytest.mark.asyncio

PUBLISH = "/v1.0/publish/pubsub"
BULK = "/v1.0-alpha1/publish/bulk/pubsub"


def bulk_sub(
    topic: str = "t",
    route: str = "/bulk",
    *,
    count: int | None = None,
    await_ms: int | None = None,
    dead_letter: str | None = None,
    rules: list[dict[str, str]] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {"enabled": True}
    if count is not None:
        config["maxMessagesCount"] = count
    if await_ms is not None:
        config["maxAwaitDurationMs"] = await_ms
    entry: dict[str, Any] = {"pubsubname": "pubsub", "topic": topic, "bulkSubscribe": config}
    if rules is not None:
        entry["routes"] = {"rules": rules, "default": route}
    else:
        entry["route"] = route
    if dead_letter:
        entry["deadLetterTopic"] = dead_letter
    if metadata:
        entry["metadata"] = metadata
    return entry


class BulkApp:
    """A subscriber answering bulk requests per entry.

    `script(n, "SUCCESS", "RETRY", ...)`: statuses for the entry whose event data has `n`, one per
    request it is in ("OMIT" leaves it out of the answer); `script_request(reply, ...)`: whole
    answers for the next requests (an int status with no body, or bytes for a 200 body).
    """

    def __init__(self, subscriptions: list[dict[str, Any]]) -> None:
        self.subscriptions = subscriptions
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self._entry_replies: dict[int, list[str]] = {}
        self._request_replies: list[int | bytes] = []
        self._arrived = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.app = Starlette(
            routes=[
                Route("/dapr/subscribe", self._subscribe),
                Route("/{path:path}", self._bulk, methods=["POST"]),
            ]
        )

    def script(self, n: int, *statuses: str) -> None:
        self._entry_replies[n] = list(statuses)

    def script_request(self, *replies: int | bytes) -> None:
        self._request_replies.extend(replies)

    async def _subscribe(self, request: Request) -> Response:
        return JSONResponse(self.subscriptions)

    async def _bulk(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append((request.url.path, dict(request.headers), body))
        self._arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self._request_replies:
            reply = self._request_replies.pop(0)
            if isinstance(reply, int):
                return Response(status_code=reply)
            return Response(reply, status_code=200, media_type="application/json")
        statuses = []
        for entry in body["entries"]:
            replies = self._entry_replies.get(n_of(entry))
            status = replies.pop(0) if replies else "SUCCESS"
            if status != "OMIT":
                statuses.append({"entryId": entry["entryId"], "status": status})
        return JSONResponse({"statuses": statuses})

    async def wait_requests(self, count: int, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def batches(self, path: str | None = None) -> list[list[int]]:
        """The `n` of the entries of every request, in arrival order."""
        return [[n_of(e) for e in body["entries"]] for p, _, body in self.requests if path in (None, p)]


def n_of(entry: dict[str, Any]) -> int:
    event = entry["event"]
    if isinstance(event, str):  # a raw payload: base64 of the published bytes
        event = {"data": json.loads(base64.b64decode(event))}
    return int(event["data"]["n"])


async def bulk_double(make_double: DoubleFactory, app: BulkApp, **kwargs: Any) -> DaprDouble:
    from tests.dapr_double.resiliency import VirtualTimer

    m = manifests(
        pubsub_metadata=kwargs.pop("pubsub_metadata", {"backOffDuration": "1ms", "backOffMaxRetries": "2"}),
        inbound_retry=kwargs.pop("inbound_retry", None),
        outbound_retry=kwargs.pop("outbound_retry", None),
    )
    return await make_double(app=app.app, manifests=m, resiliency_timer=VirtualTimer(), **kwargs)


async def publish_n(double: DaprDouble, ns: range | list[int], key: str, topic: str = "t") -> None:
    for n in ns:
        response = await double.client().post(f"{PUBLISH}/{topic}?metadata.partitionKey={key}", json={"n": n})
        assert response.status_code == 204, response.text


async def settled(double: DaprDouble, expected: dict[str, int], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until the delivery statuses are `expected` (the flush settles after the app answered)."""
    async with asyncio.timeout(timeout):
        while await double.delivery_statuses() != expected:  # noqa: ASYNC110 - polled from PostgreSQL
            await asyncio.sleep(0.01)


# -- bulk subscribe: batching ---------------------------------------------------------------------


async def test_batches_hold_at_most_max_messages_count_in_offset_order(make_double: DoubleFactory) -> None:
    """consumer.go: the claim flushes as soon as its buffer holds maxMessagesCount; a partial batch
    waits for the ticker (60 s here, so it stays pending while the full batches go)."""
    app = BulkApp([bulk_sub(count=3, await_ms=60_000)])
    double = await bulk_double(make_double, app)
    [key] = keys_on(1, 1)
    double.pause_delivery()
    await publish_n(double, range(7), key)
    double.resume_delivery()
    await app.wait_requests(2)
    await settled(double, {"acked": 6, "pending": 1})  # the partial batch waits for the ticker
    assert app.batches() == [[0, 1, 2], [3, 4, 5]]

    path, headers, body = app.requests[0]
    assert path == "/bulk" and headers["content-type"] == "application/json"
    assert headers["pubsubname"] == "pubsub"
    assert set(body) == {"entries", "id", "metadata", "pubsubname", "topic", "type"}
    assert body["type"] == "com.dapr.event.sent.bulk"
    assert (body["topic"], body["pubsubname"], body["metadata"]) == ("t", "pubsub", {"pubsubName": "pubsub"})
    assert body["id"] and body["id"] != app.requests[1][2]["id"]
    first = body["entries"][0]
    assert [e["entryId"] for e in body["entries"]] == ["0", "1", "2"]  # doBulkCallback: the index
    assert first["contentType"] == "application/cloudevents+json"
    assert first["event"] == double.published("t")[0]  # the CloudEvent as an object
    meta = first["metadata"]
    assert (meta["__key"], meta["__offset"], meta["__topic"], meta["__partition"]) == (key, "0", "t", "1")
    assert meta["partitionKey"] == key  # the publish metadata, as Kafka headers
    assert "__timestamp" in meta
    assert app.requests[1][2]["entries"][0]["metadata"]["__offset"] == "3"


async def test_a_partial_batch_is_flushed_by_the_ticker(make_double: DoubleFactory) -> None:
    """consumer.go: below maxMessagesCount the buffer goes when the maxAwaitDurationMs ticker fires."""
    app = BulkApp([bulk_sub(count=100, await_ms=20)])
    double = await bulk_double(make_double, app)
    double.pause_delivery()
    await publish_n(double, range(3), "k")
    double.resume_delivery()
    await double.wait_idle()
    assert app.batches() == [[0, 1, 2]]
    assert await double.delivery_statuses() == {"acked": 3}


async def test_defaults_and_parsing_of_bulk_subscribe() -> None:
    """subscriptions.go BulkSubscribeJSON; kafka defaults 80 / 10000 ms for settings <= 0."""
    [sub] = parse_subscriptions([bulk_sub(count=0)])
    assert sub.bulk_enabled
    assert (sub.bulk.kafka_max_messages, sub.bulk.kafka_max_await_seconds) == (80, 10.0)
    [plain] = parse_subscriptions([{"pubsubname": "p", "topic": "t", "route": "/r"}])
    assert not plain.bulk_enabled
    with pytest.raises(ValueError, match="int32"):
        parse_subscriptions([bulk_sub() | {"bulkSubscribe": {"enabled": True, "maxMessagesCount": "10"}}])


async def test_a_batch_in_flight_holds_its_partition_only(make_double: DoubleFactory) -> None:
    """The claim loop reads nothing while it flushes: a partition's next batch waits; others go."""
    app = BulkApp([bulk_sub(count=2, await_ms=60_000)])
    double = await bulk_double(make_double, app)
    app.gate = asyncio.Event()
    [k0] = keys_on(0, 1)
    [k2] = keys_on(2, 1)
    await publish_n(double, [0, 1], k0)
    await app.wait_requests(1)
    await publish_n(double, [2, 3], k0)
    await publish_n(double, [10, 11], k2)
    await app.wait_requests(2)
    assert app.batches() == [[0, 1], [10, 11]]  # partition 0's second batch waits for the first
    app.gate.set()
    await double.wait_idle()
    assert app.batches() == [[0, 1], [10, 11], [2, 3]]


# -- bulk subscribe: per-entry statuses -----------------------------------------------------------


INBOUND = {"policy": "constant", "duration": "10ms", "maxRetries": 2}


async def test_a_retry_entry_is_retried_alone_and_a_drop_entry_dead_lettered_alone(
    make_double: DoubleFactory,
) -> None:
    """bulkresiliency.go: each retry re-sends only the entries still failing; DeliverBulk: DROP is
    acknowledged and that entry alone is published to the dead-letter topic."""
    app = BulkApp([bulk_sub(count=3, await_ms=60_000, dead_letter="t-dlq")])
    double = await bulk_double(make_double, app, inbound_retry=INBOUND)
    app.script(1, "RETRY", "SUCCESS")
    app.script(2, "DROP")
    await publish_n(double, range(3), "k")
    await double.wait_idle()
    assert app.batches() == [[0, 1, 2], [1]]
    assert [e["entryId"] for e in app.requests[1][2]["entries"]] == ["1"]
    [dead] = double.published_messages("t-dlq")
    assert dead.data == double.published_messages("t")[2].data
    assert dead.metadata["__key"] == "k" and dead.partition_key == "k"
    assert await double.delivery_statuses() == {"acked": 2, "dead_lettered": 1}
    outcomes = [(a.seq, a.outcome, a.entry_id) for a in double.deliveries("api", "t")]
    seqs = [m.seq for m in double.published_messages("t")]
    assert outcomes == [
        (seqs[0], "success", "0"),
        (seqs[1], "retry", "1"),
        (seqs[2], "drop", "2"),
        (seqs[1], "success", "1"),
    ]


async def test_an_entry_the_policy_gives_up_on_is_bulk_dead_lettered_alone(make_double: DoubleFactory) -> None:
    """bulksubscription.go: after the paths, the failed entries (only) are bulk-published to the
    dead-letter topic; then the whole batch is acknowledged."""
    app = BulkApp([bulk_sub(count=3, await_ms=60_000, dead_letter="t-dlq")])
    double = await bulk_double(make_double, app, inbound_retry=INBOUND)
    app.script(1, "RETRY", "OMIT", "")  # RETRY, missing, empty status: all "retry"
    await publish_n(double, range(3), "k")
    await double.wait_idle()
    assert app.batches() == [[0, 1, 2], [1], [1]]
    [dead] = double.published_messages("t-dlq")
    assert json.loads(dead.data)["data"] == {"n": 1}
    assert dead.metadata["pubsubName"] == "pubsub"  # the bulk request metadata, copied by producer.go
    assert await double.delivery_statuses() == {"acked": 2, "dead_lettered": 1}


async def test_a_failed_bulk_request_fails_every_entry(make_double: DoubleFactory) -> None:
    """DeliverBulk: a non-2xx (not 404) or an undecodable 2xx body fails every entry of the request;
    the policy retries them all."""
    app = BulkApp([bulk_sub(count=2, await_ms=60_000)])
    double = await bulk_double(make_double, app, inbound_retry=INBOUND)
    app.script_request(503, b"not json")
    await publish_n(double, range(2), "k")
    await double.wait_idle()
    assert app.batches() == [[0, 1]] * 3
    assert [a.outcome for a in double.deliveries("api", "t")] == ["retry"] * 4 + ["success"] * 2
    assert await double.delivery_statuses() == {"acked": 2}


async def test_404_acknowledges_the_whole_request_without_dead_letters(make_double: DoubleFactory) -> None:
    app = BulkApp([bulk_sub(count=2, await_ms=60_000, dead_letter="t-dlq")])
    double = await bulk_double(make_double, app, inbound_retry=INBOUND)
    app.script_request(404)
    await publish_n(double, range(2), "k")
    await double.wait_idle()
    assert app.batches() == [[0, 1]]
    assert double.published_messages("t-dlq") == []
    assert await double.delivery_statuses() == {"dropped": 2}


async def test_without_dead_letter_the_component_retries_the_whole_batch(make_double: DoubleFactory) -> None:
    """consumer.go: the handler's error marks the prefix of entries without error, then
    retry.NotifyRecover calls the handler again with every message of the batch (SUCCESS ones too);
    when the back-off gives up the unmarked messages are left behind ("failed")."""
    app = BulkApp([bulk_sub(count=3, await_ms=60_000)])
    double = await bulk_double(make_double, app, pubsub_metadata={"backOffDuration": "1ms", "backOffMaxRetries": "1"})
    app.script(1, "RETRY", "RETRY")
    await publish_n(double, range(3), "k")
    await double.wait_idle()
    assert app.batches() == [[0, 1, 2], [0, 1, 2]]  # no inbound policy: one request per handler call
    assert await double.delivery_statuses() == {"acked": 1, "failed": 2}  # entry 0 was marked


async def test_rules_split_a_batch_into_one_request_per_path(make_double: DoubleFactory) -> None:
    """bulksubscription.go groups entries by the path their rules pick: one request per path."""
    rules = [{"match": 'event.type == "odd"', "path": "/odd"}]
    app = BulkApp([bulk_sub(count=4, await_ms=60_000, rules=rules, route="/even")])
    double = await bulk_double(make_double, app)
    for n in range(4):
        query = "?metadata.partitionKey=k" + ("&metadata.cloudevent.type=odd" if n % 2 else "")
        assert (await double.client().post(f"{PUBLISH}/t{query}", json={"n": n})).status_code == 204
    await double.wait_idle()
    assert sorted(app.batches()) == [[0, 2], [1, 3]]
    odd = next(body for path, _, body in app.requests if path == "/odd")
    assert [e["entryId"] for e in odd["entries"]] == ["1", "3"]  # ids stay the batch's


async def test_a_drop_on_a_second_path_crashes_daprd(make_double: DoubleFactory) -> None:
    """postman/http/http.go looks a DROP entry up by its batch index among the entries of the
    request: index 1 of a one-entry request is out of range, a Go panic (daprd exits)."""
    rules = [{"match": 'event.type == "odd"', "path": "/odd"}]
    app = BulkApp([bulk_sub(count=2, await_ms=60_000, rules=rules, route="/even", dead_letter="t-dlq")])
    double = await bulk_double(make_double, app)
    app.script(1, "DROP")
    await publish_n(double, [0], "k")
    assert (await double.client().post(f"{PUBLISH}/t?metadata.partitionKey=k&metadata.cloudevent.type=odd",
                                       json={"n": 1})).status_code == 204  # fmt: skip
    with pytest.raises(RuntimeError, match="delivery loop failed") as failure:
        await double.wait_idle(timeout=5)
    assert "index out of range" in str(failure.value.__cause__)


# -- bulk publish --------------------------------------------------------------------------------


async def test_bulk_publish_wraps_each_entry_and_keys_partitions(make_double: DoubleFactory) -> None:
    double = await make_double(manifests=manifests())
    [key] = keys_on(2, 1)
    body = [
        {"entryId": "a", "event": {"n": 1}, "contentType": "application/json", "metadata": {"partitionKey": key}},
        {"entryId": "b", "event": "hello", "contentType": "text/plain"},
        {"entryId": "c", "event": base64.b64encode(b"\x00\x01").decode(), "contentType": "application/octet-stream",
         "metadata": {"cloudevent.type": "custom"}},
    ]  # fmt: skip
    response = await double.client().post(f"{BULK}/t", json=body)
    assert response.status_code == 204, response.text
    a, b, c = double.published("t")
    assert (a["data"], a["datacontenttype"], a["source"], a["topic"]) == ({"n": 1}, "application/json", "api", "t")
    assert (b["data"], b["datacontenttype"]) == ("hello", "text/plain")
    assert (c["data_base64"], c["type"]) == (base64.b64encode(b"\x00\x01").decode(), "custom")
    assert b["type"] == "com.dapr.event.sent"  # no entry metadata: no overrides
    assert len({a["id"], b["id"], c["id"]}) == 3 and a["traceparent"] != b["traceparent"]
    assert double.published_messages("t")[0].partition == 2


async def test_query_metadata_wins_over_entry_metadata_in_the_kafka_producer(make_double: DoubleFactory) -> None:
    """producer.go BulkPublish copies the request metadata over each entry's (maps.Copy)."""
    double = await make_double(manifests=manifests())
    body = [{"entryId": "a", "event": {"n": 1}, "contentType": "application/json", "metadata": {"partitionKey": "x"}}]
    response = await double.client().post(f"{BULK}/t?metadata.partitionKey=y&metadata.rawPayload=true", json=body)
    assert response.status_code == 204
    [message] = double.published_messages("t")
    assert message.raw and message.data == b'{"n":1}'
    assert message.partition_key == "y"


async def test_partial_failure_answers_500_with_the_failed_entries(make_double: DoubleFactory) -> None:
    """http.go: PublishMessage's status (500) with {"failedEntries", "errorCode"}; the other entries are stored."""
    double = await make_double(manifests=manifests())
    double.fail_bulk_publish_entries("b", error="kafka server: boom")
    body = [{"entryId": i, "event": i, "contentType": "text/plain"} for i in ("a", "b", "c")]
    response = await double.client().post(f"{BULK}/t", json=body)
    assert response.status_code == 500
    assert response.json() == {
        "failedEntries": [{"entryId": "b", "error": "kafka server: boom"}],
        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
    }
    assert json.loads(response.headers["metadata.responseData"]) == response.json()
    assert [e["data"] for e in double.published("t")] == ["a", "c"]


async def test_the_outbound_policy_retries_only_failed_entries(make_double: DoubleFactory) -> None:
    """bulkpublish_resiliency.go: the accumulator keeps only the failed entries for the next attempt."""
    double = await make_double(
        manifests=manifests(outbound_retry={"policy": "constant", "duration": "10ms", "maxRetries": 2})
    )
    double.fail_bulk_publish_entries("b", times=2)
    body = [{"entryId": i, "event": i, "contentType": "text/plain"} for i in ("a", "b")]
    assert (await double.client().post(f"{BULK}/t", json=body)).status_code == 204
    assert [e["data"] for e in double.published("t")] == ["a", "b"]  # a once, b on the third attempt
    double.fail_next_publishes(3)  # a whole-call failure: every entry, every attempt
    response = await double.client().post(f"{BULK}/t", json=body)
    assert response.status_code == 500
    assert [f["entryId"] for f in response.json()["failedEntries"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        ([{"entryId": "a", "event": "x", "contentType": "text/plain"}] * 2, "DAPR_PUBSUB_MARSHAL_EVENTS",
         "error marshaling events to bytes for topic t pubsub pubsub. error: entryId is duplicated or not present for entry"),
        ([{"event": "x", "contentType": "text/plain"}], "DAPR_PUBSUB_MARSHAL_EVENTS",
         "error marshaling events to bytes for topic t pubsub pubsub. error: entryId is duplicated or not present for entry"),
        ([{"entryId": "a", "event": {"n": 1}, "contentType": "text/plain"}], "DAPR_PUBSUB_MARSHAL_ENVELOPE",
         "error when marshalling cloud event envelope for topic t pubsub pubsub: error: mismatch between contentType and event"),
        ([{"entryId": "a", "event": "x"}], "DAPR_PUBSUB_MARSHAL_ENVELOPE",
         "error when marshalling cloud event envelope for topic t pubsub pubsub: error: mismatch between contentType and event"),
        ({"entryId": "a"}, "DAPR_PUBSUB_UNMARSHAL_EVENTS",
         "error when unmarshaling the request for topic t pubsub pubsub: json: cannot unmarshal object into Go value of type []http.bulkPublishMessageEntry"),
    ],
)  # fmt: skip
async def test_validation_errors(make_double: DoubleFactory, body: Any, reason: str, message: str) -> None:
    """http.go onBulkPublish: 400 ERR_PUBSUB_EVENTS_SER with pkg/api/errors/pubsub.go's texts."""
    double = await make_double(manifests=manifests())
    response = await double.client().post(f"{BULK}/t", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert (payload["errorCode"], payload["message"]) == ("ERR_PUBSUB_EVENTS_SER", message)
    assert payload["details"][0]["reason"] == reason
    assert payload["details"][0]["metadata"]["appID"] == "api"
    assert double.published_messages() == []


async def test_an_empty_list_is_published_as_nothing(make_double: DoubleFactory) -> None:
    """Decoding `[]` (or `null`) gives no entries, and the component's SendMessages of none succeeds."""
    double = await make_double(manifests=manifests())
    assert (await double.client().post(f"{BULK}/t", json=[])).status_code == 204
    assert (await double.client().post(f"{BULK}/t", content=b"null")).status_code == 204
    response = await double.client().post("/v1.0-alpha1/publish/bulk/nope/t", json=[])
    assert (response.status_code, response.json()["errorCode"]) == (404, "ERR_PUBSUB_NOT_FOUND")
    assert double.published_messages() == []


async def test_bulk_publish_is_scoped(make_double: DoubleFactory) -> None:
    """publisher.go BulkPublish checks publishingScopes before the component: 403, nothing stored."""
    m = manifests(pubsub_metadata={"publishingScopes": "api=t"})
    double = await make_double(manifests=m)
    body = [{"entryId": "a", "event": "x", "contentType": "text/plain"}]
    assert (await double.client().post(f"{BULK}/t", json=body)).status_code == 204
    response = await double.client().post(f"{BULK}/other", json=body)
    assert response.status_code == 403
    assert response.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN"
    assert response.json()["message"] == "topic other is not allowed for app id api"
    assert [m.topic for m in double.published_messages()] == ["t"]


@pytest.mark.parametrize("version", ["1.16", "1.17", "1.18"])
async def test_bulk_publish_paths_per_version(make_double: DoubleFactory, version: str) -> None:
    """http.go constructPubSubEndpoints: v1.0-alpha1 at every tag, v1.0 added at v1.18.3; before
    that `/v1.0/publish/bulk/pubsub/t` is a publish to a pubsub named "bulk"."""
    double = await make_double(manifests=manifests(), dapr_version=version)
    body = [{"entryId": "a", "event": "x", "contentType": "text/plain"}]
    assert (await double.client().post(f"{BULK}/t", json=body)).status_code == 204
    response = await double.client().post("/v1.0/publish/bulk/pubsub/t", json=body)
    if version == "1.18":
        assert response.status_code == 204
        assert len(double.published_messages("t")) == 2
    else:
        assert response.status_code == 404
        assert response.json()["message"] == "pubsub bulk is not found"
        assert len(double.published_messages("t")) == 1


async def test_a_buffer_waiting_for_its_ticker_does_not_keep_the_broker_busy(make_double: DoubleFactory) -> None:
    """While a bulk buffer waits for its maxAwaitDurationMs tick, the delivery loop sleeps until
    the tick (Kafka's consumer blocks on its select): it does not read the broker in a loop,
    which would take the CPU the apps under test need."""
    app = BulkApp([bulk_sub(count=100, await_ms=1500)])
    double = await bulk_double(make_double, app)
    broker = double._pubsub._broker
    await publish_n(double, range(2), "k")
    counting = _CountingPool(broker._pg.pool)
    broker._pg = SimpleNamespace(pool=counting, table=broker._pg.table)
    await asyncio.sleep(0.6)
    assert app.batches() == []  # not flushed yet: the tick is 1.5 s after the claim started
    # A pass (its claim heads, the claim's backlog) per publish and per 0.5 s poll, at most.
    assert counting.queries <= 8, f"the delivery loop queried the broker {counting.queries} times meanwhile"
    await double.wait_idle()
    assert app.batches() == [[0, 1]]


class _CountingPool:
    """A connection pool that counts the queries made through it."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.queries = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._pool, name)
        if name not in ("fetch", "fetchval", "fetchrow", "execute"):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.queries += 1
            return await attribute(*args, **kwargs)

        return counted
