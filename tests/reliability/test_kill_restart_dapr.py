"""SIGKILL at random points of a write in Dapr mode: the API process is killed just before its
N-th call to the sidecar (the double, on a port, over PostgreSQL), in the middle of a state
transaction, an outbox read, a publish or the outbox's advance. A restarted process replays the
writes (same idempotency keys): every task is whole, no event is lost, and the outbox drains.

The same for the consuming side: the audit worker process is killed just before its N-th sidecar
call while it handles a bulk (Dapr bulk subscribe, issue 16); the double retries the bulk, the
restarted worker handles it, and every event has exactly one audit entry.

(tests/reliability/test_kill_restart.py does the same in embedded mode, at every SQL statement.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from doable.bootstrap import Runtime, build
from doable.domain.query import SortField, Status
from doable.platform import topology
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from tests.conftest import PG_DSN
from tests.dapr_double import DaprDouble
from tests.dapr_double.manifests import render_chart
from tests.reliability import crash_scenario_dapr as scenario
from tests.reliability.fuzz import SOAK, record
from tests.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
POINTS = os.environ.get("DOABLE_KILL_POINTS", "20" if SOAK else "5")  # "all": every sidecar call
WORKER_POINTS = int(os.environ.get("DOABLE_WORKER_KILL_POINTS", "10" if SOAK else "3"))
AUDIT = topology.WORKER_APP_IDS["audit"]


async def child(url: str, user: str, kill_at: int) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reliability.crash_scenario_dapr", url, user, str(kill_at),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_a_crash_at_any_sidecar_call_then_a_restart_loses_nothing(pg_schema: str, tmp_path: Path) -> None:
    async with DaprDouble(
        app_id=topology.API_APP_ID,
        dsn=PG_DSN,
        schema=pg_schema,
        manifests=render_chart(),
        api_token=scenario.DAPR_TOKEN,
        drop_schema_on_close=False,
    ) as double:
        async with double.serve(app_id=topology.API_APP_ID) as url:
            code, out = await child(url, "reference", 0)
            assert code == 0, out[-3000:]
            calls = int(out.strip().rsplit("calls=", 1)[1])
            every = range(1, calls + 1)
            points = list(every) if POINTS == "all" else sorted(random.Random(8).sample(every, min(int(POINTS), calls)))
            for point in points:
                user = f"killed-at-{point}"
                code, out = await child(url, user, point)
                assert code == -9, (point, code, out[-3000:])
                runtime = await build(scenario.settings_for(tmp_path, url))
                try:
                    await scenario.scenario(runtime, user)
                    page, _ = await runtime.service.list(user, ListRequest(status=Status.ALL, sort=SortField.CREATED, limit=50))
                    tasks = sorted((t.task_id, t.title, t.completed) for t in page.tasks)
                    assert [(title, done) for _, title, done in tasks] == scenario.EXPECTED, (point, tasks)
                    assert [i for i, *_ in tasks] == [1, 2, 3], (point, tasks)  # ids neither lost nor doubled
                    assert await runtime.outbox.depth() == 0, point
                finally:
                    await runtime.aclose()
                await double.wait_idle()
                published = [
                    m for m in double.published(topology.TASK_EVENTS) if m["data"]["user_id"] == user
                ]
                # At least once (a crash between publish and the outbox's advance republishes),
                # never an event lost, never a second event for one write.
                assert len({m["id"] for m in published}) == scenario.EVENTS, (point, published)
    record(
        "test_kill_restart_dapr::sigkill_at_sidecar_calls",
        sidecar_calls_in_scenario=calls,
        sigkills=len(points),
        kill_points=points,
        lost_events=0,
        half_written_tasks=0,
    )


class AuditWorker:
    """The audit worker's process (crash_scenario_dapr worker), restarted on the same port."""

    def __init__(self, sidecar: str) -> None:
        self.sidecar = sidecar
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, kill_at: int) -> int:
        """Start it and wait until it answers; the number of sidecar calls its start-up made."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.crash_scenario_dapr", "worker", self.sidecar, str(self.port),
            str(kill_at), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.process.stdout is not None
        startup = -1
        with anyio.fail_after(30):
            while startup < 0:
                line = (await self.process.stdout.readline()).decode(errors="replace")
                assert line, "the worker exited during start-up"
                if line.startswith("startup_calls="):
                    startup = int(line.split("=", 1)[1])
            async with httpx2.AsyncClient(timeout=1) as http:
                while True:
                    with contextlib.suppress(httpx2.HTTPError):
                        if (await http.get(f"http://127.0.0.1:{self.port}/healthz")).status_code == 200:
                            return startup
                    await asyncio.sleep(0.05)

    async def killed(self, within: float) -> bool:
        """Whether it died of its SIGKILL within `within` seconds."""
        assert self.process is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), within)
        return self.process.returncode == -9

    async def stop(self) -> int:
        """SIGTERM; the number of sidecar calls it made."""
        assert self.process is not None and self.process.stdout is not None
        if self.process.returncode is None:
            self.process.terminate()
        out = (await asyncio.wait_for(self.process.stdout.read(), 30)).decode(errors="replace")
        await self.process.wait()
        assert "\ncalls=" in "\n" + out, out[-3000:]
        return int(out.rsplit("\ncalls=", 1)[1].split()[0])


async def audit_writes(runtime: Runtime, user: str) -> None:
    """Nine task events for `user`, relayed in one bulk publish (so they reach the worker in bulks)."""
    service = runtime.service
    for n in range(5):
        await service.add(user, NewTask(title=f"task {n}"))
    await service.update(user, 1, TaskChanges(title="renamed"))
    await service.complete(user, 2)
    await service.complete(user, 3)
    await service.delete(user, 5)
    assert runtime.dapr is not None
    while await runtime.dapr.outbox.drain():
        pass


async def assert_audited_once(runtime: Runtime, double: DaprDouble, user: str, point: int) -> None:
    published = {m["id"] for m in double.published(topology.TASK_EVENTS) if m["data"]["user_id"] == user}
    assert runtime.history is not None
    entries = await runtime.history.list(user, limit=200)
    ids = [e.event_id for e in entries]
    assert len(published) == 9, (point, published)
    # No event lost (each has its entry), none applied twice (one entry each).
    assert sorted(ids) == sorted(published), (point, ids, published)


async def test_a_worker_killed_in_the_middle_of_a_bulk_loses_and_duplicates_nothing(
    pg_schema: str, tmp_path: Path
) -> None:
    async with (
        DaprDouble(
            app_id=topology.API_APP_ID, dsn=PG_DSN, schema=pg_schema, manifests=render_chart(),
            api_token=scenario.DAPR_TOKEN, app_token=scenario.APP_TOKEN, drop_schema_on_close=False,
        ) as double,
        double.serve(app_id=topology.API_APP_ID) as api_sidecar,
        double.serve(app_id=AUDIT) as audit_sidecar,
    ):  # fmt: skip
        worker = AuditWorker(audit_sidecar)
        await double.register_app(AUDIT, base_url=f"http://127.0.0.1:{worker.port}", load_subscriptions=False)
        runtime = await build(scenario.settings_for(tmp_path, api_sidecar))  # its relay is not started
        killed: list[int] = []
        try:
            startup = await worker.start(0)
            await double.refresh_subscriptions(AUDIT)
            await audit_writes(runtime, "reference")
            await double.wait_idle(60)
            await assert_audited_once(runtime, double, "reference", 0)
            calls = await worker.stop()
            assert calls > startup, (startup, calls)
            bulk_calls = range(startup + 1, calls + 1)  # the calls made while handling the bulks
            points = sorted(random.Random(16).sample(bulk_calls, min(WORKER_POINTS, len(bulk_calls))))
            for point in points:
                user = f"worker-killed-at-{point}"
                await worker.start(point)
                await audit_writes(runtime, user)
                if await worker.killed(within=30):
                    killed.append(point)
                else:
                    await worker.stop()  # this run made fewer calls: the point was not reached
                await worker.start(0)
                await double.wait_idle(90)  # the bulk's retries reach the restarted worker
                await assert_audited_once(runtime, double, user, point)
                await worker.stop()
        finally:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
            await runtime.aclose()
    assert killed, points  # at least one SIGKILL really fell in the middle of a bulk
    record(
        "test_kill_restart_dapr::sigkill_of_a_worker_in_a_bulk",
        sidecar_calls_handling_bulks=len(bulk_calls),
        sigkills=len(killed),
        kill_points=killed,
        lost_events=0,
        duplicated_entries=0,
    )
