"""The inbox (REST and MCP), the live stream (SSE), and webhooks: signed, retried, recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from mcp import Client

from doable.bootstrap import Runtime
from doable.domain.clock import ManualClock
from doable.usecases.inputs import NewTask, ReminderIn
from doable.usecases.live import QUEUE_SIZE, Closed, LiveEvent, LiveHub
from mcp_server.identity import fixed_user
from mcp_server.server import build_mcp
from tests.conftest import auth
from tests.workers.conftest import Endpoint, advance, open_stream, serving, settle
from workers.webhooks import SIGNATURE_HEADER, WebhookSender, sign, verify_signature


async def remind(rt: Runtime, user: str, title: str, at: str) -> int:
    task = await rt.service.add(user, NewTask(title=title, due="2026-11-27T09:00", reminders=[ReminderIn(at=at)]))
    await settle(rt)
    return task.task_id


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_inbox_lists_and_marks_read_for_its_user_only(
    rt: Runtime, clock: ManualClock, whttp: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    await rt.service.set_timezone("alice", "Europe/Berlin")
    await remind(rt, "alice", "First", "2026-11-26T12:10:00Z")
    await remind(rt, "alice", "Second", "2026-11-26T12:20:00Z")
    await remind(rt, "bob", "Bob's", "2026-11-26T12:20:00Z")
    await advance(rt, clock, timedelta(minutes=30))
    alice, bob = auth(token_for("alice")), auth(token_for("bob"))

    listed = (await whttp.get("/api/notifications", headers=alice)).json()
    assert [n["title"] for n in listed["notifications"]] == ["Second", "First"]
    assert listed["unread"] == 2
    assert listed["notifications"][0]["remind_at"] == "2026-11-26T13:20:00+01:00"  # the user's timezone
    first, second = listed["notifications"][1]["id"], listed["notifications"][0]["id"]
    bob_ids = [n["id"] for n in (await whttp.get("/api/notifications", headers=bob)).json()["notifications"]]

    # Bob cannot mark Alice's notifications read.
    assert (await whttp.post("/api/notifications/read", json={"ids": [first]}, headers=bob)).json() == {
        "marked": 0,
        "unread": 1,
    }
    read = await whttp.post("/api/notifications/read", json={"ids": [first, *bob_ids]}, headers=alice)
    assert read.json() == {"marked": 1, "unread": 1}
    unread = (await whttp.get("/api/notifications", params={"unread_only": True}, headers=alice)).json()
    assert [n["id"] for n in unread["notifications"]] == [second]
    assert (await whttp.post("/api/notifications/read", json={"ids": "all"}, headers=alice)).json() == {
        "marked": 1,
        "unread": 0,
    }
    assert (await whttp.get("/api/notifications", headers=bob)).json()["unread"] == 1
    assert (await whttp.get("/api/notifications")).status_code == 401


async def test_mcp_notification_tools(rt: Runtime, clock: ManualClock) -> None:
    await remind(rt, "alice", "Pay rent", "2026-11-26T12:10:00Z")
    await remind(rt, "bob", "Bob's", "2026-11-26T12:10:00Z")
    await advance(rt, clock, timedelta(minutes=15))
    mcp = build_mcp(rt.service, fixed_user("alice"), inbox=rt.inbox, history=rt.history)
    async with Client(mcp) as client:
        listed = await call(client, "list_notifications", unread_only=True)
        assert [n["title"] for n in listed["notifications"]] == ["Pay rent"]
        assert listed["unread"] == 1
        assert await call(client, "mark_read", ids="all") == {"marked": 1, "unread": 0}
        assert (await call(client, "list_notifications", unread_only=True))["notifications"] == []
        assert len((await call(client, "list_notifications"))["notifications"]) == 1


async def test_live_stream_delivers_own_notifications_once(
    rt: Runtime, clock: ManualClock, wapp: Any, token_for: Callable[..., str]
) -> None:
    await remind(rt, "alice", "Standup", "2026-11-26T12:10:00Z")
    await remind(rt, "bob", "Bob's", "2026-11-26T12:10:00Z")
    async with (
        open_stream(wapp, "/api/notifications/stream", auth(token_for("alice"))) as alice,
        open_stream(wapp, f"/api/notifications/stream?access_token={token_for('bob')}") as bob,
    ):
        assert alice.status == 200 and alice.headers["content-type"].startswith("text/event-stream")
        await advance(rt, clock, timedelta(minutes=10))
        event = await alice.next()
        assert (event.event, event.data["title"], event.data["user_id"]) == ("notification", "Standup", "alice")
        assert event.id == str(event.data["id"])
        assert (await bob.next()).data["title"] == "Bob's"
        await advance(rt, clock, timedelta(hours=1))
        assert await alice.nothing_within(0.2)


async def test_live_stream_resumes_from_last_event_id(
    rt: Runtime, clock: ManualClock, wapp: Any, token_for: Callable[..., str]
) -> None:
    await remind(rt, "alice", "One", "2026-11-26T12:10:00Z")
    await remind(rt, "alice", "Two", "2026-11-26T12:20:00Z")
    await advance(rt, clock, timedelta(minutes=30))  # both arrive while no client is connected
    assert rt.inbox is not None
    [_two, one] = (await rt.inbox.recent("alice"))[0]
    headers = {**auth(token_for("alice")), "Last-Event-ID": str(one.id)}
    async with open_stream(wapp, "/api/notifications/stream", headers) as stream:
        assert (await stream.next()).data["title"] == "Two"
        assert await stream.nothing_within(0.2)


async def test_live_stream_needs_a_valid_token(wapp: Any) -> None:
    async with open_stream(wapp, "/api/notifications/stream") as stream:
        assert stream.status == 401
    async with open_stream(wapp, "/api/updates/stream?access_token=not-a-token") as stream:
        assert stream.status == 401


async def test_task_updates_keep_two_clients_of_a_user_in_sync_and_others_out(
    rt: Runtime, wapp: Any, token_for: Callable[..., str]
) -> None:
    alice = auth(token_for("alice"))
    async with (
        open_stream(wapp, "/api/updates/stream", alice) as first,
        open_stream(wapp, "/api/updates/stream", alice) as second,
        open_stream(wapp, "/api/updates/stream", auth(token_for("bob"))) as bob,
    ):
        task = await rt.service.add("alice", NewTask(title="Shared list"))
        await rt.service.complete("alice", task.task_id)
        await settle(rt)
        for stream in (first, second):
            created, completed = await stream.next(), await stream.next()
            assert (created.event, created.data["event_type"], created.data["task"]["title"]) == (
                "task",
                "created",
                "Shared list",
            )
            assert completed.data["event_type"] == "completed"
        assert await bob.nothing_within(0.2)


# ---- webhooks ----------------------------------------------------------------------------


@pytest.fixture
async def endpoint_url() -> AsyncIterator[tuple[Endpoint, str]]:
    endpoint = Endpoint()
    async with serving(endpoint) as base:
        yield endpoint, f"{base}/hook"


async def test_webhook_calls_are_signed_with_the_secret_shown_once(
    rt: Runtime,
    clock: ManualClock,
    whttp: httpx2.AsyncClient,
    token_for: Callable[..., str],
    endpoint_url: tuple[Endpoint, str],
) -> None:
    endpoint, url = endpoint_url
    alice = auth(token_for("alice"))
    created = (await whttp.put("/api/webhook", json={"url": url}, headers=alice)).json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert (await whttp.get("/api/webhook", headers=alice)).json()["secret"] is None

    await remind(rt, "alice", "Water plants", "2026-11-26T12:05:00Z")
    await advance(rt, clock, timedelta(minutes=5))
    [request] = endpoint.received
    signature, now = request.headers[SIGNATURE_HEADER.lower()], int(clock.now().timestamp())
    assert verify_signature(secret, signature, request.body, now=now)
    assert not verify_signature("whsec_other", signature, request.body, now=now)
    assert json.loads(request.body)["notification"]["title"] == "Water plants"
    status = (await whttp.get("/api/webhook", headers=alice)).json()
    assert [(d["state"], d["attempts"], d["last_status"]) for d in status["deliveries"]] == [("delivered", 1, 200)]


async def test_a_failing_webhook_is_retried_with_backoff_then_recorded(
    rt: Runtime,
    clock: ManualClock,
    whttp: httpx2.AsyncClient,
    token_for: Callable[..., str],
    endpoint_url: tuple[Endpoint, str],
) -> None:
    endpoint, url = endpoint_url
    endpoint.statuses = [500, 503, 500, 200]  # the 4th would succeed, but the bound is 3 attempts
    alice = auth(token_for("alice"))
    await whttp.put("/api/webhook", json={"url": url}, headers=alice)
    await remind(rt, "alice", "Backup", "2026-11-26T12:05:00Z")
    await advance(rt, clock, timedelta(minutes=5))
    assert len(endpoint.received) == 1
    await advance(rt, clock, timedelta(seconds=9))
    assert len(endpoint.received) == 1  # first retry after 10 s
    await advance(rt, clock, timedelta(seconds=1))
    assert len(endpoint.received) == 2
    await advance(rt, clock, timedelta(seconds=30))  # second retry 30 s later
    assert len(endpoint.received) == 3
    await advance(rt, clock, timedelta(hours=1))
    assert len(endpoint.received) == 3
    [delivery] = (await whttp.get("/api/webhook", headers=alice)).json()["deliveries"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("failed", 3, 500)
    assert delivery["last_error"] == "endpoint answered 500"
    # Every attempt carried the same body, each signed afresh.
    assert len({r.body for r in endpoint.received}) == 1


async def test_webhook_urls_must_be_public_unless_allowed(
    rt: Runtime, whttp: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    assert rt.inbox is not None
    rt.inbox._allow_private = False
    alice = auth(token_for("alice"))
    for url in ("http://127.0.0.1:3500/v1.0/state", "http://localhost/x", "http://10.0.0.7/", "ftp://example.com/"):
        response = await whttp.put("/api/webhook", json={"url": url}, headers=alice)
        assert response.status_code == 422, url
    assert (
        await whttp.put("/api/webhook", json={"url": "https://hooks.example.com/doable"}, headers=alice)
    ).status_code == 200
    assert (await whttp.delete("/api/webhook", headers=alice)).status_code == 204
    assert (await whttp.delete("/api/webhook", headers=alice)).status_code == 404


async def test_sender_refuses_hosts_resolving_to_private_addresses(endpoint_url: tuple[Endpoint, str]) -> None:
    endpoint, url = endpoint_url
    sender = WebhookSender(allow_private=False)
    for target in (url, url.replace("127.0.0.1", "localhost")):
        result = await sender.send(target, "{}", secret="s", delivery_id=1, timestamp=0)
        assert not result.ok and result.error is not None and "private" in result.error
    assert endpoint.received == []
    await sender.aclose()


def test_signatures_expire_and_detect_tampering() -> None:
    header = sign("whsec_k", b'{"a":1}', 1_000_000)
    assert verify_signature("whsec_k", header, b'{"a":1}', now=1_000_100)
    assert not verify_signature("whsec_k", header, b'{"a":2}', now=1_000_100)
    assert not verify_signature("whsec_k", header, b'{"a":1}', now=1_000_000 + 301)
    assert not verify_signature("whsec_k", "garbage", b"", now=0)


async def test_a_stream_that_falls_behind_is_closed_rather_than_grown() -> None:
    hub = LiveHub()
    async with hub.connect("alice", frozenset({"task"})) as stream:
        for n in range(QUEUE_SIZE + 10):
            hub.push("alice", LiveEvent(kind="task", id=str(n), data={}))
        events = [await stream.next() for _ in range(QUEUE_SIZE + 1)]
        assert all(isinstance(e, LiveEvent) for e in events[:-1])
        assert events[-1] == Closed("fell behind")


async def test_streams_end_when_the_server_shuts_down(rt: Runtime, wapp: Any, token_for: Callable[..., str]) -> None:
    async with open_stream(wapp, "/api/updates/stream", auth(token_for("alice"))) as stream:
        await asyncio.sleep(0.05)
        rt.live.close_all("server shutting down")
        closed = await stream.next()
        assert (closed.event, closed.data) == ("closed", {"reason": "server shutting down"})
