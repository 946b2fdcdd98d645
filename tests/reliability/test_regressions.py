"""One regression test per defect the reliability and security suites found (see
docs/reliability.md, "Defects found"). Each names what used to go wrong."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest
import sqlalchemy as sa

from doable.adapters.sql.engine import create_engine, migrate
from doable.adapters.sql.repository import SqlUnitOfWork
from doable.adapters.sql.transactions import transaction
from doable.bootstrap import Runtime
from doable.domain.errors import InvalidArgument, Unavailable
from doable.domain.recurrence import check_start, compile_rule, next_occurrence
from doable.platform import logs
from doable.usecases.inputs import NewTask
from tests.conftest import PG_DSN, PG_HOST, PG_PORT, auth
from tests.reliability.tcp_proxy import TcpProxy

UTC_ZONE = ZoneInfo("UTC")


# ---- unknown API paths and wrong methods (the MCP app at the root answered in plain text) -----


async def test_unknown_api_paths_and_wrong_methods_get_a_json_404(
    http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    h = auth(token_for("alice"))
    for method, path in (("GET", "/api/nope"), ("GET", "/api/tasks/%2F"), ("POST", "/api/tasks/1"), ("PUT", "/api/tasks")):
        response = await http.request(method, path, headers=h)
        assert response.status_code in (404, 405), (method, path)
        assert response.headers["content-type"].startswith("application/json"), (method, path, response.text)
        assert response.json()["error"] in ("not_found", "method_not_allowed")
    assert (await http.get("/.well-known/oauth-protected-resource/mcp")).status_code == 200  # still the MCP app's


# ---- a body over the limit without Content-Length (FastAPI answered 400 "error parsing the body") -


async def test_a_chunked_body_over_the_limit_is_413_not_400(http: httpx2.AsyncClient, token_for: Callable[..., str]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1200):
            yield b"x" * 1000

    headers = {**auth(token_for("alice")), "content-type": "application/json"}
    response = await http.post("/api/tasks", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


# ---- a body that is not text (invalid UTF-8: FastAPI answered an undocumented 400) ---------------


async def test_a_body_that_is_not_utf8_is_a_422_like_any_bad_json(
    http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    headers = {**auth(token_for("alice")), "content-type": "application/json"}
    response = await http.post("/api/tasks", content=b"\xff\xfe{\x00}", headers=headers)
    assert response.status_code == 422
    assert response.json() == {"error": "invalid_argument", "message": "body: must be JSON text (UTF-8)"}


# ---- RRULEs: accepted though they never produce a date from the due date; garbage UNTIL; density --


@pytest.mark.parametrize(
    ("rule", "due"),
    [
        ("FREQ=DAILY;INTERVAL=7;BYDAY=SA", "2026-12-01T09:00"),  # a Tuesday: every 7 days is never a Saturday
        ("FREQ=YEARLY;INTERVAL=2;BYMONTH=2;BYMONTHDAY=29", "2027-02-01"),  # odd years are never leap years
        ("FREQ=DAILY;UNTIL=20250101", "2026-12-01T09:00"),  # ended before the due date
    ],
)
async def test_a_rule_that_never_produces_a_date_from_the_due_date_is_refused(
    http: httpx2.AsyncClient, token_for: Callable[..., str], rule: str, due: str
) -> None:
    h = auth(token_for("alice"))
    response = await http.post("/api/tasks", json={"title": "x", "due": due, "recurrence": rule}, headers=h)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "recurrence"
    assert "never produces a date on or after the due date" in response.json()["message"]
    # ... and moving a repeating task's due date where its rule never matches is refused too.
    ok = await http.post("/api/tasks", json={"title": "sat", "due": "2026-12-05T09:00", "recurrence": "FREQ=DAILY;INTERVAL=7;BYDAY=SA"}, headers=h)
    assert ok.status_code == 201
    moved = await http.patch(f"/api/tasks/{ok.json()['id']}", json={"due": "2026-12-01T09:00"}, headers=h)
    assert moved.status_code == 422 and "never produces a date" in moved.json()["message"]


def test_a_garbage_until_is_refused_not_read_as_this_month() -> None:
    with pytest.raises(InvalidArgument, match=r"recurrence\.until"):
        compile_rule("FREQ=DAILY;UNTIL=0000001")


def test_more_than_24_occurrences_a_day_is_refused() -> None:
    minutely = "FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=" + ",".join(map(str, range(60)))
    with pytest.raises(InvalidArgument, match="at most 24 times a day"):
        compile_rule(minutely)
    compile_rule("FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24))))  # hourly is fine


def test_a_rule_that_never_matches_is_refused_without_seconds_of_cpu() -> None:
    """dateutil looks for a match up to the year 9999: refusing "every day of February 30th" took
    3.6 s of event-loop time (from the year 2000), and checking a never-matching rule from a due
    date as long again. A generous bound: the point is "not seconds", and the request is served
    on the event loop, where every other user waits meanwhile."""
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)  # a Tuesday
    began = time.perf_counter()
    with pytest.raises(InvalidArgument, match="never produces a date"):
        compile_rule("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")
    with pytest.raises(InvalidArgument, match="never produces a date"):
        compile_rule("FREQ=WEEKLY;BYMONTH=4;BYMONTHDAY=31")
    with pytest.raises(InvalidArgument, match="never produces a date on or after the due date"):
        check_start("FREQ=DAILY;INTERVAL=7;BYDAY=SA", start=start, tz=UTC_ZONE)
    with pytest.raises(InvalidArgument, match="never produces a date on or after the due date"):
        check_start("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYMONTH=2;BYMONTHDAY=30", start=start, tz=UTC_ZONE)
    assert time.perf_counter() - began < 2.0
    check_start("FREQ=DAILY;INTERVAL=7;BYDAY=TU", start=start, tz=UTC_ZONE)  # matches from a Tuesday
    assert next_occurrence("FREQ=DAILY;INTERVAL=7;BYDAY=TU", start=start, after=start, tz=UTC_ZONE) == datetime(
        2026, 12, 8, 9, tzinfo=UTC
    )


async def test_completing_the_last_occurrence_of_a_series_ends_it_without_an_error(runtime: Runtime) -> None:
    """When the series had no next date, the recurrence worker crashed (TypeError comparing None)
    and retried the event until it was dead-lettered."""
    service = runtime.service
    task = await service.add("alice", NewTask(title="once a year", due="2026-02-05T09:00", recurrence="FREQ=WEEKLY;BYMONTH=2;UNTIL=20270101"))
    await service.complete("alice", task.task_id)
    assert runtime.delivery is not None
    await runtime.delivery.settle()
    assert runtime.sql_engine is not None
    async with runtime.sql_engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM dead_letters"))).scalar_one() == 0
        assert (await conn.execute(sa.text("SELECT count(*) FROM tasks"))).scalar_one() == 1


# ---- a database that stops answering (no timeout: requests hung until TCP gave up) --------------


@pytest.mark.postgres
async def test_a_database_that_stops_answering_fails_within_the_timeout(pg_schema: str) -> None:
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    engine = create_engine(
        PG_DSN.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}"), schema=pg_schema, timeout=0.5
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        proxy.blackhole()
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(Unavailable):
            async with transaction(engine, write=False) as conn:
                await conn.execute(sa.text("SELECT 1"))
        assert loop.time() - began < 3
    finally:
        await proxy.close()
        await engine.dispose()


# ---- a connection lost mid-transaction (worker and read-side stores answered a raw error: 500) ----


@pytest.mark.postgres
async def test_a_connection_lost_inside_a_transaction_is_unavailable(pg_schema: str) -> None:
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    engine = create_engine(PG_DSN.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}"), schema=pg_schema, timeout=5)
    try:
        await migrate(engine)
        with pytest.raises(Unavailable):
            async with transaction(engine, write=False) as conn:
                await conn.execute(sa.text("SELECT 1"))
                await proxy.cut()
                await conn.execute(sa.text("SELECT 1"))
        await proxy.restore()
        with pytest.raises(Unavailable):
            async with SqlUnitOfWork(engine, write=False) as uow:
                await uow.tasks.count("alice")
                await proxy.cut()
                await uow.tasks.count("alice")
    finally:
        await proxy.close()
        await engine.dispose()


# ---- secrets in logs: SQL parameters at debug level (webhook secrets), configured secrets ---------


def test_debug_logging_never_writes_sql_parameters_or_configured_secrets() -> None:
    stream = io.StringIO()
    logs.configure("json", "debug")
    handler = logging.getLogger().handlers[0]
    handler.stream = stream  # type: ignore[attr-defined]
    logs.register_secret("configured-secret-value-1234")
    try:
        logging.getLogger("aiosqlite").debug("executing INSERT INTO webhooks VALUES ('whsec_abcdefghijklmnop')")
        logging.getLogger("sqlalchemy.engine").info("[SQL parameters] ('whsec_abcdefghijklmnop',)")
        logging.getLogger("somelib").warning("connect failed for configured-secret-value-1234 whsec_abcdefghijklmnop")
        try:
            raise RuntimeError("boom with configured-secret-value-1234")
        except RuntimeError:
            logging.getLogger("somelib").exception("failed")
    finally:
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert "whsec_abcdefghijklmnop" not in text and "configured-secret-value-1234" not in text, text
    assert "aiosqlite" not in text and "SQL parameters" not in text
    assert next(json.loads(line)["event"] for line in text.splitlines()).startswith("connect failed for [redacted]")


# ---- worker apps without an app token answered anyone -------------------------------------------
# (tests/security/test_internal_routes.py::test_without_an_app_token_worker_routes_answer_only_loopback)

# ---- an oversized token in ?access_token= was a 422, not the 401 every other bad token gets -------
# (tests/security/test_tokens.py::test_bad_tokens_get_401_on_every_surface[oversized])


# ---- the in-process bus gave events up after ~1.5 s of a database outage -------------------------


async def test_the_bus_waits_out_an_outage_instead_of_dead_lettering() -> None:
    """A handler failing with Unavailable used up the bus's 5 attempts (0.1 s ... 0.8 s apart)
    and the event was dead-lettered (or, with the database down, not even that): a worker
    missed an event of a short outage for good."""
    from doable.adapters.embedded.bus import InProcessBus, RetryPolicy
    from doable.domain.clock import ManualClock
    from doable.ports.messages import Message, Outcome, Subscription

    dead: list[dict[str, object]] = []
    sleeps: list[float] = []

    class Sink:
        async def record(self, **fields: object) -> None:
            dead.append(fields)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    failures = iter(range(12))

    async def handler(_: Message) -> Outcome:
        if next(failures, None) is not None:
            raise Unavailable("the database is unavailable; try again shortly")
        return Outcome.SUCCESS

    bus = InProcessBus(ManualClock(datetime(2026, 11, 26, tzinfo=UTC)), retry=RetryPolicy(attempts=3), dead_letters=Sink(), sleep=sleep)
    bus.subscribe(Subscription(topic="t", handler=handler, name="s"))
    await bus.publish("t", {}, key="k", event_id="e1")
    assert dead == [] and len(sleeps) == 12 and max(sleeps) <= 5.0


# ---- a crash between the reminder ledger write and the job's scheduling lost the job ------------


async def test_a_reminder_job_lost_between_ledger_and_scheduling_is_repaired_on_redelivery(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by SIGKILL at every SQL statement: the redelivered event saw the ledger row
    "unchanged" and skipped scheduling, so the reminder waited for the sweeper (up to 90 s late)."""
    from doable.adapters.embedded.jobs import EmbeddedJobs

    original = EmbeddedJobs.schedule
    failures = [RuntimeError("the process died here")]

    async def dies_once(self: EmbeddedJobs, owner: str, job: Any) -> None:
        if failures:
            raise failures.pop()
        await original(self, owner, job)

    monkeypatch.setattr(EmbeddedJobs, "schedule", dies_once)
    await runtime.service.add("alice", NewTask(title="call", due="2030-01-01T10:00", reminders=[{"minutes_before": 5}]))  # type: ignore[list-item]
    assert runtime.delivery is not None
    await runtime.delivery.settle()  # the bus retries the event; the handler sees its own ledger row
    jobs = await runtime.delivery.jobs.pending("reminders")
    assert [j.due_at for j in jobs] == [datetime(2030, 1, 1, 9, 55, tzinfo=UTC)]


# ---- a webhook on 127.0.0.1 written as 0x7f000001 (or 2130706433, 127.1) was accepted -------------


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1", "0177.0.0.1", "0xa9.254.169.254"])
async def test_shorthand_ipv4_webhook_hosts_are_refused_like_their_dotted_form(
    http: httpx2.AsyncClient, token_for: Callable[..., str], host: str
) -> None:
    """Resolvers read these as loopback / link-local addresses (the sender refused them at send
    time; setting the webhook accepted them)."""
    response = await http.put("/api/webhook", json={"url": f"http://{host}/hook"}, headers=auth(token_for("alice")))
    assert response.status_code == 422, response.text
    assert "private and loopback" in response.json()["message"]
