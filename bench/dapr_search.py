"""2 (Dapr). Dapr-state mode: one user with 10,000 tasks (and, in a full run, one with 100,000), the
same keyword + filter + sort + first page through TaskService over the Dapr state adapter, talking
HTTP to the sidecar double running as its own process (as daprd would), over PostgreSQL.

Per size, in the same run: the adapter as shipped (list projection, this process's caches warm);
the same with empty caches (a process that has seen nothing: every projection chunk is read); a
list right after a write by this process (one chunk and one task read again); the write itself;
and the read path before the projection (every bucket read and filtered: `list_index=False`)."""

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
from bench.search import Query, queries
from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.keys import INDEX_FORMAT, bucket_key, bucket_of, chunk_of, index_key, meta_key
from doable.adapters.dapr.operations import Upsert
from doable.adapters.dapr.projection import index_entry
from doable.adapters.dapr.state import DaprUnitOfWorkFactory
from doable.domain.clock import SystemClock
from doable.domain.task import Task
from doable.platform.topology import STATE_STORE
from doable.usecases.service import TaskService

# v2: the list projection's keys (tasks-index:*) and the buckets' revs.
SCHEMA = f"bench_dapr_{datagen.DATA_VERSION}_v2"
SIZES = {10_000: datagen.QUICK, 100_000: datagen.FULL}  # tasks -> the generated data they come from


def user_of(n: int) -> str:
    return f"{datagen.BIG_USER}-{n // 1000}k"


async def _ensure_state(client: DaprClient, n: int, log: Any) -> bool:
    """Load n tasks (the first n of the big user's generated tasks) once, in the layout the adapter
    writes: buckets with their revs, the projection chunks, the meta naming every chunk's version."""
    user = user_of(n)
    meta = await client.get_state(STATE_STORE, meta_key(user))
    if meta is not None and meta.value.get("next_id") == n and meta.value.get("ixv") == INDEX_FORMAT:
        return True
    path, _ = await datagen.ensure_sqlite(SIZES[n], log)
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT data FROM task_data WHERE user_id = ? AND task_id <= ? ORDER BY task_id", (datagen.BIG_USER, n)
        ).fetchall()
    finally:
        db.close()
    rev = 1
    buckets: dict[int, dict[str, Any]] = {}
    chunks: dict[int, dict[str, Any]] = {}
    for (data,) in rows:
        task = Task.model_validate_json(data).model_copy(update={"user_id": user})
        b = buckets.setdefault(bucket_of(task.task_id), {"tasks": {}, "r": {}})
        b["tasks"][str(task.task_id)] = task.model_dump(mode="json")
        b["r"][str(task.task_id)] = rev
        chunks.setdefault(chunk_of(task.task_id), {})[str(task.task_id)] = index_entry(task, rev)
    ops = [Upsert(bucket_key(user, b), value, first_write=False) for b, value in buckets.items()]
    ops += [Upsert(index_key(user, c), {"v": rev, "e": e}, first_write=False) for c, e in chunks.items()]
    for i in range(0, len(ops), 20):
        await client.transact(STATE_STORE, ops[i : i + 20])
    meta_value = {
        "next_id": n, "count": n, "outbox_head": 0, "outbox_tail": 0,
        "ixv": INDEX_FORMAT, "rev": rev, "ix": {str(c): rev for c in chunks},
    }  # fmt: skip
    await client.transact(STATE_STORE, [Upsert(meta_key(user), meta_value, first_write=False)])
    log(f"  loaded {n:,} tasks into Dapr state ({len(buckets)} buckets, {len(chunks)} projection chunks)")
    return False


async def _measure(
    section: Section, client: DaprClient, n: int, qs: list[Query], *, runs: int, before_queries: int, log: Any
) -> None:
    user = user_of(n)
    factory = DaprUnitOfWorkFactory(client, STATE_STORE)
    service = TaskService(factory, SystemClock())
    before = TaskService(DaprUnitOfWorkFactory(client, STATE_STORE, list_index=False), SystemClock())
    for q in qs:  # warm up, and the same answers from the projection and from the buckets
        page, _ = await service.list(user, q.request())
        if q in qs[:before_queries]:
            ref, _ = await before.list(user, q.request())
            if [t.task_id for t in page.tasks] != [t.task_id for t in ref.tasks] or page.total != ref.total:
                raise AssertionError(f"dapr {n} {q}: projection {page.total} != buckets {ref.total}")
    p = f"dapr.{n // 1000}k"
    for run in range(runs):
        warm, cold, after_write, write, old = Timer(), Timer(), Timer(), Timer(), Timer()
        for i, q in enumerate(qs):
            with warm:
                await service.list(user, q.request())
            fresh = TaskService(DaprUnitOfWorkFactory(client, STATE_STORE, list_chunks=0, list_tasks=0), SystemClock())
            with cold:
                await fresh.list(user, q.request())
            # A write by this process (a version bump of one task: no visible change), then a list.
            task_id = 1 + (run * 997 + i * 7919) % n
            with write:
                async with factory() as uow:
                    task = await uow.tasks.get(user, task_id)
                    if task is not None:
                        await uow.tasks.update(task.evolve())
                        await uow.commit()
            with after_write:
                await service.list(user, q.request())
            if run == 0 and i < before_queries:
                with old:
                    await before.list(user, q.request())
        section.figure(f"{p}.service").add_run(summarize(warm.samples))
        section.figure(f"{p}.service_cold_cache", note="a process that has read nothing yet").add_run(
            summarize(cold.samples)
        )
        section.figure(f"{p}.service_after_own_write").add_run(summarize(after_write.samples))
        section.figure(f"{p}.write", note="get + update + commit of one task (adapter)").add_run(
            summarize(write.samples)
        )
        if old.samples:
            section.figure(
                f"{p}.before_every_bucket", note=f"the path before the projection; run 1, {before_queries} queries"
            ).add_run(summarize(old.samples))
    log(f"  dapr {n:,}: p95 {section.figures[f'{p}.service'].median('p95'):.0f} ms")


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs = 2 if quick else 3
    sizes = [10_000] if quick else [10_000, 100_000]
    qs = queries()
    section.params.update(
        tasks=sizes, runs=runs, queries_per_run=len(qs), sidecar="tests/dapr_double as a process, PostgreSQL"
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
        client = DaprClient(f"http://127.0.0.1:{port}", timeout=120.0)
        try:
            for n in sizes:
                section.info.setdefault("cached", {})[str(n)] = await _ensure_state(client, n, log)
                # Every bucket per list costs seconds at 100,000 tasks: the before path gets 6 queries there.
                await _measure(section, client, n, qs, runs=runs, before_queries=len(qs) if n <= 10_000 else 6, log=log)
        finally:
            await client.aclose()
    finally:
        sidecar.terminate()
        try:
            sidecar.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sidecar.kill()
    section.target(
        "2", "search dapr-state (10k tasks): p95", section.figures["dapr.10k.service"].median("p95"), 100.0, "ms"
    )
    if "dapr.100k.service" in section.figures:
        section.target(
            "2", "search dapr-state (100k tasks): p95", section.figures["dapr.100k.service"].median("p95"), 300.0, "ms"
        )
