"""PostgreSQL down for a while, under embedded `doable serve` (its loops running, real time):
requests fail fast with a clear 503, nothing acknowledged is lost, and everything recovers
without a restart: the outbox drains, workers catch up, a reminder due during the outage is
sent once.

The database is "down" for the app only: it reaches PostgreSQL through a TCP proxy this test
cuts (tests/reliability/tcp_proxy.py); the machine's server keeps running for everyone else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx2
import pytest
import sqlalchemy as sa
import structlog

from doable.bootstrap import Runtime, build
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.conftest import PG_HOST, PG_PORT, auth, lifespan_running
from tests.reliability.fuzz import record
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DB_PASSWORD = "db-password-" + "p" * 20  # trust auth ignores it; it must never be logged
FAST = 2.0  # a refused database answers well within this
PARTITION_TIMEOUT = 2.0  # DOABLE_DATABASE_TIMEOUT_SECONDS in the partition test (default 10)


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    p = TcpProxy(PG_HOST, PG_PORT)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def db_timeout() -> float:
    return 10.0  # the default of DOABLE_DATABASE_TIMEOUT_SECONDS


@pytest.fixture
async def served(
    settings: Settings, pg_schema: str, proxy: TcpProxy, db_timeout: float
) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient]]:
    url = f"postgresql+asyncpg://postgres:{DB_PASSWORD}@127.0.0.1:{proxy.port}/test"
    configured = settings.model_copy(
        update={
            "database_url": url,
            "database_schema": pg_schema,
            "outbox_poll_seconds": 0.2,
            "reminder_sweep_seconds": 0.5,
            "reminder_sweep_grace_seconds": 0.5,
            "database_timeout_seconds": db_timeout,
        }
    )
    runtime = await build(configured)
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as http:
                yield runtime, http
    finally:
        await runtime.aclose()


async def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call()
    return result, time.monotonic() - started


async def eventually(check: Callable[[], Any], within: float = 20.0) -> None:
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - polling another loop's progress over HTTP
            await asyncio.sleep(0.1)


async def test_database_down_fails_fast_loses_nothing_and_recovers_without_restart(
    served: tuple[Runtime, httpx2.AsyncClient], proxy: TcpProxy, token_for: Callable[..., str]
) -> None:
    runtime, http = served
    h = auth(token_for("alice"))
    soon = datetime.now(UTC) + timedelta(seconds=2.5)  # falls due while the database is down
    before = await http.post(
        "/api/tasks",
        json={"title": "Reminder during the outage", "due": (soon + timedelta(hours=1)).isoformat(), "reminders": [{"at": soon.isoformat()}]},
        headers=h,
    )
    assert before.status_code == 201
    for n in range(3):
        assert (await http.post("/api/tasks", json={"title": f"before {n}"}, headers=h)).status_code == 201

    with structlog.testing.capture_logs() as captured:
        await proxy.cut()
        failures: list[float] = []
        for method, path, body in (
            ("GET", "/api/tasks", None),
            ("POST", "/api/tasks", {"title": "during"}),
            ("PATCH", "/api/tasks/2", {"title": "renamed during"}),
            ("POST", "/api/tasks/3/complete", None),
            ("DELETE", "/api/tasks/4", None),
            ("GET", "/api/profile", None),
            ("GET", "/api/notifications", None),
            ("GET", "/api/history", None),
        ):
            response, took = await timed(lambda m=method, p=path, b=body: http.request(m, p, json=b, headers=h))
            assert response.status_code == 503, (method, path, response.status_code, response.text)
            assert response.json() == {
                "error": "unavailable",
                "message": "the database is unavailable; try again shortly",
            }, response.text
            assert took < FAST, (method, path, took)
            failures.append(took)
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"database": "unavailable"}
        await asyncio.sleep(3.0)  # down for a while: the reminder's time passes, loops keep failing
        await proxy.restore()

        await eventually(lambda: _ready(http))
        after = await http.post("/api/tasks", json={"title": "after"}, headers=h)
        assert after.status_code == 201, after.text
        await eventually(lambda: _drained(runtime))
        await eventually(lambda: _notified(http, h))

    titles = sorted(t["title"] for t in (await http.get("/api/tasks", headers=h)).json()["tasks"])
    assert titles == ["Reminder during the outage", "after", "before 0", "before 1", "before 2"]
    notes = (await http.get("/api/notifications", headers=h)).json()["notifications"]
    assert [n["title"] for n in notes] == ["Reminder during the outage"]  # once, not once per retry
    history = (await http.get("/api/history", params={"limit": 200}, headers=h)).json()["entries"]
    assert sorted(e["event"] for e in history) == ["created"] * 5  # every event reached the audit worker
    assert runtime.sql_engine is not None
    async with runtime.sql_engine.connect() as conn:
        dead = (await conn.execute(sa.text("SELECT subscription, reason FROM dead_letters"))).all()
    assert dead == [], dead
    for event in captured:
        assert DB_PASSWORD not in repr(event), event
    record(
        "test_outage_database::refused",
        requests_during_outage=len(failures),
        slowest_failure_seconds=round(max(failures), 3),
        outage_seconds=3.0,
        lost=0,
    )


async def _ready(http: httpx2.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def _drained(runtime: Runtime) -> bool:
    return await runtime.outbox.depth() == 0


async def _notified(http: httpx2.AsyncClient, h: dict[str, str]) -> bool:
    response = await http.get("/api/notifications", headers=h)
    return response.status_code == 200 and bool(response.json()["notifications"])


@pytest.mark.parametrize("db_timeout", [PARTITION_TIMEOUT])
async def test_a_partitioned_database_fails_requests_within_the_timeout_and_recovers(
    served: tuple[Runtime, httpx2.AsyncClient], proxy: TcpProxy, token_for: Callable[..., str]
) -> None:
    """Nothing refuses, nothing answers (a partition): without timeouts every request and loop
    would wait for TCP to give up. With them, a clear 503 in about DOABLE_DATABASE_TIMEOUT_SECONDS."""
    runtime, http = served
    h = auth(token_for("alice"))
    assert (await http.post("/api/tasks", json={"title": "before"}, headers=h)).status_code == 201
    await eventually(lambda: _drained(runtime))
    proxy.blackhole()
    took: list[float] = []
    for method, path, body in (("GET", "/api/tasks", None), ("POST", "/api/tasks", {"title": "during"})):
        response, seconds = await timed(lambda m=method, p=path, b=body: http.request(m, p, json=b, headers=h))
        assert response.status_code == 503, (method, path, response.text)
        assert response.json()["error"] == "unavailable"
        # A stale pooled connection's ping, then a new connection, each bounded by the timeout.
        assert seconds < 5 * PARTITION_TIMEOUT + 2, (method, path, seconds)
        took.append(seconds)
    await proxy.restore()
    await eventually(lambda: _ready(http))
    assert (await http.post("/api/tasks", json={"title": "after"}, headers=h)).status_code == 201
    await eventually(lambda: _drained(runtime))
    titles = sorted(t["title"] for t in (await http.get("/api/tasks", headers=h)).json()["tasks"])
    assert titles == ["after", "before"]
    history = (await http.get("/api/history", headers=h)).json()["entries"]
    assert len(history) == 2
    record("test_outage_database::partition", requests_during_partition=len(took), slowest_failure_seconds=round(max(took), 3), lost=0)


async def test_a_short_flap_while_events_are_in_flight_loses_none(
    served: tuple[Runtime, httpx2.AsyncClient], proxy: TcpProxy, token_for: Callable[..., str]
) -> None:
    """Writes land, then the database drops out while the relay and the workers handle their
    events, and comes back before handlers would give up or after: every event is handled once."""
    runtime, http = served
    h = auth(token_for("alice"))
    flaps = 0
    for outage in (0.3, 1.2, 3.0):
        created = [
            await http.post("/api/tasks", json={"title": f"burst {outage} {n}", "tags": ["x"]}, headers=h)
            for n in range(8)
        ]
        assert all(r.status_code == 201 for r in created), [(r.status_code, r.text[:100]) for r in created]
        await proxy.cut()
        flaps += 1
        await asyncio.sleep(outage)
        await proxy.restore()
    await eventually(lambda: _ready(http))
    await eventually(lambda: _drained(runtime), within=40)
    await eventually(lambda: _audited(http, h, 24), within=40)
    assert runtime.sql_engine is not None
    async with runtime.sql_engine.connect() as conn:
        dead = (await conn.execute(sa.text("SELECT subscription, reason FROM dead_letters"))).all()
        per_event = (
            await conn.execute(sa.text("SELECT event_id FROM audit_events GROUP BY event_id HAVING count(*) > 1"))
        ).all()
    assert dead == [] and per_event == [], (dead, per_event)
    record("test_outage_database::flaps", flaps=flaps, events=24, lost=0, duplicated=0)


async def _audited(http: httpx2.AsyncClient, h: dict[str, str], count: int) -> bool:
    response = await http.get("/api/history", params={"limit": 200}, headers=h)
    return response.status_code == 200 and len(response.json()["entries"]) == count
