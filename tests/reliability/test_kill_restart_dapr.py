"""SIGKILL at random points of a write in Dapr mode: the API process is killed just before its
N-th call to the sidecar (the double, on a port, over PostgreSQL), in the middle of a state
transaction, an outbox read, a publish or the outbox's advance. A restarted process replays the
writes (same idempotency keys): every task is whole, no event is lost, and the outbox drains.

(tests/reliability/test_kill_restart.py does the same in embedded mode, at every SQL statement.)
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

import pytest

from doable import topology
from doable.domain.query import SortField, Status
from doable.inputs import ListRequest
from doable.runtime import build
from tests.conftest import PG_DSN
from tests.dapr_double import DaprDouble
from tests.dapr_double.manifests import render_chart
from tests.reliability import crash_scenario_dapr as scenario
from tests.reliability.fuzz import SOAK, record

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
POINTS = os.environ.get("DOABLE_KILL_POINTS", "20" if SOAK else "5")  # "all": every sidecar call


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
