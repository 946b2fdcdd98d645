"""2 (Dapr). Dapr-state mode: one user with 10,000 tasks, the same keyword + filter + sort + first
page through TaskService over the Dapr state adapter, talking HTTP to the sidecar double running as
its own process (as daprd would), over PostgreSQL. Reported with the time of the adapter's bulk
read alone (the state it must fetch for every list) as the reference."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import datagen
from bench.core import Section, Timer, summarize
from bench.procs import ROOT, free_port
from bench.search import queries
from doable.dapr.client import DaprClient, Upsert
from doable.domain.clock import SystemClock
from doable.domain.task import Task
from doable.service import TaskService
from doable.storage.dapr_state import BUCKET, DaprUnitOfWorkFactory, bucket_key, bucket_of, meta_key
from doable.topology import STATE_STORE

SCHEMA = f"bench_dapr_{datagen.DATA_VERSION}"
USER = datagen.BIG_USER
N_TASKS = 10_000


async def _ensure_state(client: DaprClient, log: Any) -> bool:
    """Load the user's 10,000 tasks (the first 10,000 of the big user's generated tasks) once."""
    meta = await client.get_state(STATE_STORE, meta_key(USER))
    if meta is not None and meta.value.get("next_id") == N_TASKS:
        return True
    path, _ = await datagen.ensure_sqlite(datagen.QUICK, log)
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT data FROM tasks WHERE user_id = ? AND task_id <= ? ORDER BY task_id", (USER, N_TASKS)
        ).fetchall()
    finally:
        db.close()
    buckets: dict[int, dict[str, Any]] = {}
    for (data,) in rows:
        task = Task.model_validate_json(data)
        buckets.setdefault(bucket_of(task.task_id), {})[str(task.task_id)] = task.model_dump(mode="json")
    ops = [Upsert(bucket_key(USER, n), {"tasks": tasks}, first_write=False) for n, tasks in buckets.items()]
    for i in range(0, len(ops), 20):
        await client.transact(STATE_STORE, ops[i : i + 20])
    meta_value = {"next_id": N_TASKS, "count": N_TASKS, "outbox_head": 0, "outbox_tail": 0}
    await client.transact(STATE_STORE, [Upsert(meta_key(USER), meta_value, first_write=False)])
    log(f"  loaded {N_TASKS:,} tasks into Dapr state ({len(ops)} buckets of {BUCKET})")
    return False


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs, rounds = (2, 1) if quick else (3, 1)
    section.params.update(
        tasks=N_TASKS,
        runs=runs,
        queries_per_run=rounds * len(queries()),
        sidecar="tests/dapr_double as a process, PostgreSQL",
    )
    port = free_port()
    sidecar = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-m", "bench.dapr_sidecar", SCHEMA, str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=(work / "dapr-sidecar.log").open("ab"),
    )
    try:
        assert sidecar.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(sidecar.stdout.readline), 60)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"sidecar double did not start: {line!r}")
        client = DaprClient(f"http://127.0.0.1:{port}", timeout=30.0)
        try:
            section.info["cached"] = await _ensure_state(client, log)
            service = TaskService(DaprUnitOfWorkFactory(client, STATE_STORE), SystemClock())
            # The adapter as it was before its parsed-bucket cache (bench/README.md), in the same run.
            uncached = TaskService(DaprUnitOfWorkFactory(client, STATE_STORE, parsed_buckets=0), SystemClock())
            keys = [bucket_key(USER, n) for n in range(bucket_of(N_TASKS) + 1)]
            qs = queries()
            for q in qs:  # warm up
                await service.list(USER, q.request())
            for _ in range(runs):
                svc_t, bulk_t, uncached_t = Timer(), Timer(), Timer()
                for _ in range(rounds):
                    for q in qs:
                        with svc_t:
                            await service.list(USER, q.request())
                        with bulk_t:
                            await client.get_bulk(STATE_STORE, keys)
                        with uncached_t:
                            await uncached.list(USER, q.request())
                section.figure("dapr.service").add_run(summarize(svc_t.samples))
                section.figure("dapr.service_without_parse_cache").add_run(summarize(uncached_t.samples))
                section.figure("dapr.bulk_read_only", note="the state every list must fetch, fetched alone").add_run(
                    summarize(bulk_t.samples)
                )
        finally:
            await client.aclose()
    finally:
        sidecar.terminate()
        try:
            sidecar.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sidecar.kill()
    section.target(
        "2", "search dapr-state (10k tasks): p95", section.figures["dapr.service"].median("p95"), 100.0, "ms"
    )
