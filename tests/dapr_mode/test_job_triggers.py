"""Jobs that fire together (issue 16): daprd's scheduler sends one `POST /job/{name}` per job, and
the app handles them concurrently, at most JOBS_IN_FLIGHT at once (the rest wait their turn)."""

from __future__ import annotations

import asyncio

import anyio
import httpx2
from fastapi import FastAPI

from doable.domain.clock import SystemClock
from doable.ports.messages import Job, Outcome
from doable.web.callbacks import JOBS_IN_FLIGHT, callback_router
from tests.dapr_mode.conftest import APP_TOKEN


async def test_jobs_that_fire_together_run_concurrently_up_to_the_bound() -> None:
    running, most, done = 0, 0, []
    release, full = asyncio.Event(), asyncio.Event()

    async def on_job(job: Job) -> Outcome:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running == JOBS_IN_FLIGHT:
            full.set()
        await release.wait()
        running -= 1
        done.append(job.name)
        return Outcome.SUCCESS

    app = FastAPI()
    app.include_router(callback_router([], clock=SystemClock(), on_job=on_job, app_token=APP_TOKEN))
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    count = JOBS_IN_FLIGHT + 10
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:

        async def trigger(n: int) -> int:
            response = await http.post(f"/job/reminder-{n}", json={"n": n}, headers={"dapr-api-token": APP_TOKEN})
            return response.status_code

        calls = [asyncio.create_task(trigger(n)) for n in range(count)]
        with anyio.fail_after(10):
            await full.wait()  # as many as the bound run at once
        await asyncio.sleep(0.1)  # the others arrived meanwhile, and wait
        assert running == most == JOBS_IN_FLIGHT
        release.set()
        with anyio.fail_after(10):
            codes = await asyncio.gather(*calls)
    assert codes == [200] * count and len(done) == count
