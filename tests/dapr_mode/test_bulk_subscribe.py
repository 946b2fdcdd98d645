"""Bulk subscribe (issue 16): batch-first subscriptions declare `bulkSubscribe`, and the double
(daprd's bulk handler over the Kafka component, tests/dapr_double/bulk_subscribe.py) hands them
bulks that the app answers per entry (doable.adapters.dapr.deliveries.answer_bulk).

A subscriber app built from the real callback routes records what its batch handler did: a
register per user (the last message applied wins, so order shows in the end state) and every
handling. One failing message is retried, or dead-lettered, alone; the later messages of its user
wait for it (order per user holds across bulks); other users are not held back; a redelivered
bulk changes nothing.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
from fastapi import FastAPI

from doable.adapters.dapr.deliveries import BULK_SUBSCRIBE
from doable.bootstrap import Runtime
from doable.domain.clock import SystemClock
from doable.platform import topology
from doable.ports.messages import Message, Outcome, Subscription
from doable.usecases.inputs import NewTask
from doable.web.callbacks import callback_router
from tests.conftest import auth
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import APP_TOKEN, WorkerFactory, settle, sidecar_client

AUDIT = topology.WORKER_APP_IDS["audit"]
SUB = "audit-task-events"
USERS = ("u0", "u1", "u2")


@dataclass
class Recorder:
    """A batch-first task-events subscriber's effects, with failures on demand."""

    fail: Callable[[Message, int], Outcome | None] = lambda _m, _n: None
    register: dict[str, int] = field(default_factory=dict)  # user -> seq of the last applied
    handled: Counter[str] = field(default_factory=Counter)  # message id -> handlings
    applied: Counter[str] = field(default_factory=Counter)  # message id -> effects applied
    bulks: list[int] = field(default_factory=list)

    async def handle(self, messages: Sequence[Message]) -> list[Outcome]:
        self.bulks.append(len(messages))
        outcomes: list[Outcome] = []
        for m in messages:
            self.handled[m.id] += 1
            failed = self.fail(m, self.handled[m.id])
            if failed is not None:
                outcomes.append(failed)
                continue
            self.register[m.data["user"]] = m.data["seq"]  # the last applied wins: order shows
            self.applied[m.id] += 1
            outcomes.append(Outcome.SUCCESS)
        return outcomes

    async def single(self, message: Message) -> Outcome:
        [outcome] = await self.handle([message])
        return outcome


async def subscriber(double: DaprDouble, recorder: Recorder) -> FastAPI:
    sub = Subscription(topic=topology.TASK_EVENTS, handler=recorder.single, name=SUB, batch_handler=recorder.handle)
    app = FastAPI()
    app.include_router(callback_router([sub], clock=SystemClock(), app_token=APP_TOKEN))
    await double.register_app(AUDIT, asgi_app=app)
    return app


async def publish(double: DaprDouble, count: int) -> list[tuple[str, str, int]]:
    """`count` messages round-robin over USERS, all published before delivery starts (so they
    come in bulks); returns (id, user, seq) in publish order."""
    sent: list[tuple[str, str, int]] = []
    sidecar = sidecar_client(double, topology.API_APP_ID)
    double.pause_delivery()
    try:
        for seq in range(count):
            user = USERS[seq % len(USERS)]
            await sidecar.publish(
                topology.PUBSUB, topology.TASK_EVENTS, {"user": user, "seq": seq},
                partition_key=user, event_id=f"m{seq}", event_type="doable.task-events.test",
            )  # fmt: skip
            sent.append((f"m{seq}", user, seq))
    finally:
        await sidecar.aclose()
        double.resume_delivery()
    return sent


def last_seq(sent: list[tuple[str, str, int]]) -> dict[str, int]:
    return {user: max(seq for _, u, seq in sent if u == user) for user in USERS}


async def test_batch_first_subscriptions_are_declared_bulk_and_the_others_are_not(
    double: DaprDouble, start_worker: WorkerFactory
) -> None:
    app = await start_worker("audit")
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        subscriptions = (await http.get("/dapr/subscribe", headers={"dapr-api-token": APP_TOKEN})).json()
    by_topic = {s["topic"]: s for s in subscriptions}
    assert by_topic[topology.TASK_EVENTS]["bulkSubscribe"] == BULK_SUBSCRIBE
    assert "bulkSubscribe" not in by_topic[topology.DEAD_LETTER]  # one at a time, never dropped


async def test_the_apis_live_subscriptions_are_bulk_and_never_dead_letter(app: FastAPI) -> None:
    # One bulk per 50 ms instead of one request to every API replica per task change; a live
    # message nobody could take is not worth a dead letter.
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        subscriptions = (await http.get("/dapr/subscribe", headers={"dapr-api-token": APP_TOKEN})).json()
    by_topic = {s["topic"]: s for s in subscriptions}
    assert set(by_topic) == set(topology.LIVE_TOPICS)
    for topic in topology.LIVE_TOPICS:
        assert by_topic[topic]["bulkSubscribe"] == BULK_SUBSCRIBE, by_topic[topic]
        assert "deadLetterTopic" not in by_topic[topic]


async def test_one_failing_message_is_retried_alone_and_its_users_later_messages_wait_for_it(
    double: DaprDouble,
) -> None:
    # m4 (u1) fails twice, then succeeds; nothing else fails.
    recorder = Recorder(fail=lambda m, n: Outcome.RETRY if m.id == "m4" and n <= 2 else None)
    await subscriber(double, recorder)
    sent = await publish(double, 30)
    await double.wait_idle(15)

    assert recorder.register == last_seq(sent)  # order per user held: the last one won
    assert max(recorder.bulks) > 1  # they came in bulks
    u1_after = [mid for mid, user, seq in sent if user == "u1" and seq > 4]
    for mid, user, seq in sent:
        if mid == "m4":
            assert recorder.handled[mid] == 3
        elif user != "u1" or seq < 4:
            assert recorder.handled[mid] == 1, mid  # neither held back nor handled twice
    # u1's later messages went again with m4 (answered RETRY while it failed), each applied once
    # more after it: a redelivery, harmless to a handler keyed by message id.
    assert all(recorder.handled[mid] >= 2 for mid in u1_after if mid in recorder.handled)
    assert not double.published(topology.DEAD_LETTER)


async def test_a_message_that_keeps_failing_is_dead_lettered_alone(double: DaprDouble) -> None:
    # m4's handling raises whenever it is in the batch: the bulk is handled again one message at a
    # time, and m4 alone fails; daprd dead-letters it when the delivery policy's retries run out.
    def poison(m: Message, _n: int) -> Outcome | None:
        if m.id == "m4":
            raise RuntimeError("poison")
        return None

    recorder = Recorder(fail=poison)
    await subscriber(double, recorder)
    sent = await publish(double, 12)
    await double.wait_idle(15)

    assert [e["id"] for e in double.published(topology.DEAD_LETTER)] == ["m4"]
    assert {mid for mid, _, _ in sent} - set(recorder.applied) == {"m4"}  # all the others took effect
    assert recorder.register["u1"] == last_seq(sent)["u1"]
    retried = Counter(a.event["id"] for a in double.deliveries(AUDIT) if a.outcome == "retry" and a.event)
    assert set(retried) == {"m4"}


async def test_a_redelivered_bulk_changes_nothing(
    app: FastAPI,
    runtime: Runtime,
    double: DaprDouble,
    start_worker: WorkerFactory,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    """Through the real audit worker: its bulks reach it twice (as after a rebalance before the
    offsets were committed); the history still has one entry per event."""
    await start_worker("audit")
    double.duplicate_deliveries(100, app_id=AUDIT, topic=topology.TASK_EVENTS)
    for n in range(6):
        task = await runtime.service.add(f"user{n % 2}", NewTask(title=f"t{n}"))
        if n % 3 == 0:
            await runtime.service.complete(f"user{n % 2}", task.task_id)
    await settle(runtime, double)

    attempts = double.deliveries(AUDIT, topology.TASK_EVENTS)
    assert any(a.duplicate for a in attempts) and all(a.outcome == "success" for a in attempts)
    assert all(a.bulk_id for a in attempts)
    for user in ("user0", "user1"):
        entries = (await http.get("/api/history", params={"limit": 200}, headers=auth(token_for(user)))).json()
        events = [(e["event"], e["task_id"]) for e in entries["entries"]]
        # Three tasks created and one completed per user, each recorded once.
        assert sorted(e for e, _ in events) == ["completed", "created", "created", "created"], events
        assert len(set(events)) == len(events)


async def test_the_bulk_answer_has_a_status_per_entry_and_never_drop(double: DaprDouble) -> None:
    """Straight to the route, as daprd posts it: a CloudEvent entry, a raw-payload entry, an
    unreadable one and one the handler gives up on answer RETRY for those two (daprd dead-letters
    them once its retries run out), without holding back the later entries of their user."""
    recorder = Recorder(fail=lambda m, _n: Outcome.DROP if m.id == "m2" else None)
    app = await subscriber(double, recorder)

    def cloudevent(seq: int, user: str) -> dict[str, Any]:
        return {"specversion": "1.0", "id": f"m{seq}", "source": "doable-api", "type": "t", "topic": "task-events",
                "datacontenttype": "application/json", "data": {"user": user, "seq": seq}}  # fmt: skip

    raw = base64.b64encode(json.dumps(cloudevent(1, "u1")).encode()).decode()
    envelope = {
        "id": "bulk-1", "type": "com.dapr.event.sent.bulk", "topic": "task-events", "pubsubname": "pubsub",
        "metadata": {"pubsubName": "pubsub"},
        "entries": [
            {"entryId": "0", "event": cloudevent(0, "u0"), "metadata": {"__key": "u0"},
             "contentType": "application/cloudevents+json"},
            {"entryId": "1", "event": raw, "metadata": {"__key": "u1"}, "contentType": "application/octet-stream"},
            {"entryId": "2", "event": cloudevent(2, "u0"), "metadata": {"__key": "u0"},
             "contentType": "application/cloudevents+json"},
            {"entryId": "3", "event": {"no": "id"}, "metadata": {"__key": "u1"},
             "contentType": "application/cloudevents+json"},
            {"entryId": "4", "event": cloudevent(4, "u0"), "metadata": {"__key": "u0"},
             "contentType": "application/cloudevents+json"},
            {"entryId": "5", "event": cloudevent(5, "u1"), "metadata": {"__key": "u1"},
             "contentType": "application/cloudevents+json"},
        ],
    }  # fmt: skip
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        answers = [
            (await http.post(f"/events/{SUB}", json=envelope, headers={"dapr-api-token": APP_TOKEN})).json()
            for _ in range(2)
        ]
    expected = {"0": "SUCCESS", "1": "SUCCESS", "2": "RETRY", "3": "RETRY", "4": "SUCCESS", "5": "SUCCESS"}
    for answer in answers:  # the same answer for the redelivered bulk
        assert {s["entryId"]: s["status"] for s in answer["statuses"]} == expected
    assert recorder.register == {"u0": 4, "u1": 5}
