"""The sidecar client over a real address (aiohttp, `doable.adapters.dapr.sidecar_http`) and job triggers
handled in batches (`doable.adapters.dapr.deliveries.JobBatches`).

The in-process transport the other Dapr-mode tests use keeps httpx2; these tests pin what the
aiohttp path must do the same: what is sent (token, JSON, query), what comes back, and which
failures are retried (never sent) and which are not (a transaction that may have committed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx2
import pytest
from fastapi import FastAPI

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.deliveries import JobBatches
from doable.adapters.dapr.operations import Upsert
from doable.domain.clock import SystemClock
from doable.domain.errors import Unavailable
from doable.ports.messages import Job, Outcome
from doable.web.callbacks import JOBS_IN_FLIGHT, callback_router
from tests.dapr_mode.conftest import APP_TOKEN
from tests.servers import free_port

Answer = Callable[[str, str, dict[str, str], bytes], bytes | None]


@asynccontextmanager
async def http_server(answer: Answer) -> AsyncIterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    """A minimal HTTP/1.1 server: `answer(method, target, headers, body)` gives the raw response,
    or None to close the connection without one. Yields its URL and the requests it got."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if ":" in h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen.append((method, target, headers, body))
                raw = answer(method, target, headers, body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


def respond(status: int, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_state_calls_over_a_real_address_send_the_token_json_and_query() -> None:
    def answer(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        if target.startswith("/v1.0/state/store/bulk"):
            return respond(200, b'[{"key": "a", "data": {"n": 1}, "etag": "7"}, {"key": "b"}]')
        if target.startswith("/v1.0/state/store/"):
            return respond(200, b'{"n": 2}', etag="9")
        return respond(204)

    async with http_server(answer) as (url, seen):
        client = DaprClient(url, api_token="secret-token")
        try:
            found = await client.get_bulk("store", ["a", "b"])
            one = await client.get_state("store", "user:1/meta")
            await client.transact("store", [Upsert("a", {"n": 3}, etag="7")])
        finally:
            await client.aclose()
    assert found["a"].value == {"n": 1} and found["a"].etag == "7" and "b" not in found
    assert one is not None and one.value == {"n": 2} and one.etag == "9"
    assert [s[0] for s in seen] == ["POST", "GET", "POST"]
    assert all(s[2]["dapr-api-token"] == "secret-token" for s in seen)
    assert json.loads(seen[0][3]) == {"keys": ["a", "b"], "parallelism": 16}
    assert seen[0][2]["content-type"] == "application/json"
    # The key is sent quoted, as given, with the consistency query.
    assert seen[1][1] == "/v1.0/state/store/user%3A1%2Fmeta?consistency=strong"
    operation = json.loads(seen[2][3])["operations"][0]
    assert operation["request"]["etag"] == "7" and operation["operation"] == "upsert"


async def test_a_transaction_whose_answer_is_lost_is_not_sent_again() -> None:
    async with http_server(lambda *_: None) as (url, seen):
        client = DaprClient(url, retries=3, backoff=0.001)
        try:
            with pytest.raises(Unavailable, match="did not answer"):
                await client.transact("store", [Upsert("a", {"n": 1})])
        finally:
            await client.aclose()
    assert len(seen) == 1  # it may have committed: never repeated


async def test_reads_are_retried_after_a_5xx_and_a_refused_connection_is_unavailable() -> None:
    answers = iter([respond(503), respond(200, b'{"n": 1}', etag="1")])
    async with http_server(lambda *_: next(answers)) as (url, seen):
        client = DaprClient(url, retries=2, backoff=0.001)
        try:
            item = await client.get_state("store", "k")
        finally:
            await client.aclose()
    assert item is not None and item.value == {"n": 1} and len(seen) == 2
    refused = DaprClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.001)
    try:
        with pytest.raises(Unavailable, match="unavailable"):
            await refused.get_state("store", "k")
        assert not await refused.healthy()
    finally:
        await refused.aclose()


def job(name: str) -> Job:
    return Job(name=name, due_at=datetime(2026, 12, 4, tzinfo=UTC), data={"n": name})


async def test_job_triggers_arriving_together_are_one_batch_each_answered_for_itself() -> None:
    batches: list[list[str]] = []

    async def handle(jobs: Sequence[Job]) -> list[Outcome]:
        batches.append([j.name for j in jobs])
        return [Outcome.RETRY if j.name == "b" else Outcome.SUCCESS for j in jobs]

    batched = JobBatches(handle, window=0.02)
    outcomes = await asyncio.gather(*(batched(job(n)) for n in "abc"))
    assert batches == [["a", "b", "c"]]
    assert outcomes == [Outcome.SUCCESS, Outcome.RETRY, Outcome.SUCCESS]
    assert await batched(job("d")) is Outcome.SUCCESS  # a later trigger: a batch of its own
    assert batches[-1] == ["d"]


async def test_a_full_batch_starts_at_once_and_a_failing_batch_fails_each_trigger() -> None:
    batches: list[int] = []

    async def handle(jobs: Sequence[Job]) -> list[Outcome]:
        batches.append(len(jobs))
        if any(j.name == "boom" for j in jobs):
            raise Unavailable("the sidecar is down")
        return [Outcome.SUCCESS] * len(jobs)

    batched = JobBatches(handle, window=60.0, most=2)
    async with asyncio.timeout(5):  # the 60 s window is not waited for: the batch is full
        assert list(await asyncio.gather(batched(job("a")), batched(job("b")))) == [Outcome.SUCCESS] * 2
        results = await asyncio.gather(batched(job("boom")), batched(job("c")), return_exceptions=True)
    assert batches == [2, 2]
    assert all(isinstance(r, Unavailable) for r in results)


async def test_a_cancelled_trigger_leaves_the_batch_to_the_others() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handle(jobs: Sequence[Job]) -> list[Outcome]:
        started.set()
        await release.wait()
        return [Outcome.SUCCESS] * len(jobs)

    batched = JobBatches(handle, window=0.01)
    gone = asyncio.create_task(batched(job("a")))
    stays = asyncio.create_task(batched(job("b")))
    await started.wait()
    gone.cancel()
    release.set()
    assert await stays is Outcome.SUCCESS
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_triggers_that_arrive_while_the_batches_run_go_together_in_the_next() -> None:
    """At most `in_flight` batches run at once; what arrives meanwhile waits, then goes as one
    batch (so under load a batch grows instead of each trigger waiting for a turn of its own)."""
    batches: list[list[str]] = []
    running, most = 0, 0
    release = asyncio.Event()

    async def handle(jobs: Sequence[Job]) -> list[Outcome]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        batches.append([j.name for j in jobs])
        await release.wait()
        running -= 1
        return [Outcome.SUCCESS] * len(jobs)

    batched = JobBatches(handle, window=0.01, in_flight=2)
    first = [asyncio.create_task(batched(job(n))) for n in ("a", "b")]
    await asyncio.sleep(0.05)  # one batch [a, b] runs
    second = [asyncio.create_task(batched(job(n))) for n in ("c",)]
    await asyncio.sleep(0.05)  # a second batch [c] runs: both slots are taken
    later = [asyncio.create_task(batched(job(str(n)))) for n in range(150)]
    await asyncio.sleep(0.05)  # these wait for a slot, however long the window
    assert batches == [["a", "b"], ["c"]] and running == 2
    release.set()
    async with asyncio.timeout(5):
        outcomes = await asyncio.gather(*first, *second, *later)
    assert outcomes == [Outcome.SUCCESS] * 153
    assert most == 2
    # The 150 that waited went in full batches (JOB_BATCH_MAX = 100), in arrival order.
    assert batches[2:] == [[str(n) for n in range(100)], [str(n) for n in range(100, 150)]]


async def test_the_job_route_lets_every_trigger_join_a_batch() -> None:
    """The route's bound on jobs in flight (JOBS_IN_FLIGHT) is for handlers that take one job at
    a time; with JobBatches more triggers than that wait together for one batch."""
    sizes: list[int] = []
    gate = asyncio.Event()

    async def handle(jobs: Sequence[Job]) -> list[Outcome]:
        sizes.append(len(jobs))
        await gate.wait()
        return [Outcome.SUCCESS] * len(jobs)

    app = FastAPI()
    batched = JobBatches(handle, window=0.01, in_flight=1)
    app.include_router(callback_router([], clock=SystemClock(), on_job=batched, app_token=APP_TOKEN))
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:

        async def trigger(n: int) -> int:
            response = await http.post(f"/job/j-{n}", json={"n": n}, headers={"dapr-api-token": APP_TOKEN})
            return response.status_code

        head = asyncio.create_task(trigger(0))
        await asyncio.sleep(0.05)  # the first batch runs and holds the only slot
        rest = [asyncio.create_task(trigger(n)) for n in range(1, JOBS_IN_FLIGHT + 20)]
        await asyncio.sleep(0.1)
        gate.set()
        async with asyncio.timeout(10):
            codes = await asyncio.gather(head, *rest)
    assert codes == [200] * (JOBS_IN_FLIGHT + 20)
    assert sizes == [1, JOBS_IN_FLIGHT + 19]
