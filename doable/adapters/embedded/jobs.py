"""Embedded mode's Jobs API: one-shot jobs persisted in SQL and fired by an in-process loop.

Same semantics as Dapr Jobs: a job belongs to the owner that scheduled it (Dapr: the app-id)
and only that owner's handler receives it; scheduling a name again overwrites it; a job fires
once at its time, and a failed firing is retried with backoff a bounded number of times.
Because jobs live in the database, a restart loses none, and jobs that fell due while the
process was down fire once as soon as it starts. Time comes from the injectable clock: tests
move a ManualClock and call `fire_due()` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import sqlalchemy as sa
import structlog
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.transactions import from_micros, transaction, upsert
from doable.adapters.sql.worker_schema import ScheduledJobRow
from doable.domain.clock import Clock
from doable.domain.query import micros
from doable.platform.metrics import JOBS_FIRED
from doable.ports.messages import Cron, Job, JobBatchHandler, JobHandler, Outcome, outcome_for

log = structlog.get_logger("doable.jobs")

jobs_t = table_of(ScheduledJobRow)

# The loop re-reads the table at least this often, so a clock that jumps is noticed.
MAX_IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class JobRetry:
    attempts: int = 5
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=1)

    def delay(self, attempt: int) -> timedelta:
        return min(self.max_delay, self.first_delay * (1 << (attempt - 1)))


class EmbeddedJobs:
    """The persisted scheduler of one process; `scheduler(owner)` is the JobScheduler an owner uses."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        *,
        retry: JobRetry | None = None,
        batch: int = 400,
        chunk: int = 50,
        concurrency: int = 4,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._retry = retry or JobRetry()
        self._batch = batch
        # Due jobs are fired `chunk` at a time per owner (one batch-handler call each), at most
        # `concurrency` chunks at once; single-job handlers run `concurrency` jobs at once.
        self._chunk = max(1, chunk)
        self._concurrency = max(1, concurrency)
        self._handlers: dict[str, JobHandler] = {}
        self._batch_handlers: dict[str, JobBatchHandler] = {}
        self._wake = asyncio.Event()
        # One firing pass at a time: the loop and an explicit fire_due() must not fire a job twice.
        self._firing = asyncio.Lock()

    def scheduler(self, owner: str) -> OwnerScheduler:
        return OwnerScheduler(self, owner)

    def handle(self, owner: str, handler: JobHandler, batch: JobBatchHandler | None = None) -> None:
        """Deliver `owner`'s jobs to `handler` (like the app behind a Dapr app-id); jobs that fall
        due together go to `batch` when given."""
        self._handlers[owner] = handler
        if batch is not None:
            self._batch_handlers[owner] = batch

    def _upsert_job(self, conn: Any) -> Any:
        stmt = upsert(conn, jobs_t)
        return stmt.on_conflict_do_update(
            index_elements=[jobs_t.c.owner, jobs_t.c.name],
            set_={
                "due_us": stmt.excluded.due_us,
                "payload": stmt.excluded.payload,
                "revision": jobs_t.c.revision + 1,
                "attempts": 0,
            },
        )

    async def schedule_many(self, owner: str, jobs: Sequence[Job]) -> None:
        """`schedule` for many jobs in one transaction (the last of a name wins)."""
        rows = [
            {
                "owner": owner,
                "name": j.name,
                "due_us": micros(j.due_at),
                "payload": json.dumps(j.data),
                "revision": 1,
                "attempts": 0,
            }
            for j in {j.name: j for j in jobs}.values()
        ]
        if not rows:
            return
        async with transaction(self._engine) as conn:
            await conn.execute(self._upsert_job(conn), rows)
        self._wake.set()

    async def cancel_many(self, owner: str, names: Sequence[str]) -> None:
        if not names:
            return
        async with transaction(self._engine) as conn:
            await conn.execute(sa.delete(jobs_t).where(jobs_t.c.owner == owner, jobs_t.c.name.in_(sorted(set(names)))))

    async def schedule(self, owner: str, job: Job) -> None:
        await self.schedule_many(owner, [job])

    async def cancel(self, owner: str, name: str) -> None:
        async with transaction(self._engine) as conn:
            await conn.execute(sa.delete(jobs_t).where(jobs_t.c.owner == owner, jobs_t.c.name == name))

    async def pending(self, owner: str | None = None) -> list[Job]:
        """Jobs not yet fired, soonest first (for tests and operators)."""
        stmt = sa.select(jobs_t).order_by(jobs_t.c.due_us, jobs_t.c.name)
        if owner is not None:
            stmt = stmt.where(jobs_t.c.owner == owner)
        async with transaction(self._engine, write=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return [Job(name=r.name, due_at=from_micros(r.due_us), data=json.loads(r.payload)) for r in rows]

    async def next_due(self) -> datetime | None:
        stmt = sa.select(sa.func.min(jobs_t.c.due_us)).where(jobs_t.c.owner.in_(list(self._handlers)))
        async with transaction(self._engine, write=False) as conn:
            value = (await conn.execute(stmt)).scalar_one_or_none()
        return from_micros(value) if value is not None else None

    async def fire_due(self) -> int:
        """Fire every job due by the clock's now, soonest first, in bounded concurrent batches
        (`chunk` jobs per handler call, `concurrency` calls at once); how many fired."""
        async with self._firing:
            return await self._fire_due()

    async def _fire_due(self) -> int:
        fired = 0
        limiter = anyio.CapacityLimiter(self._concurrency)
        while True:
            now = self._clock.now()
            stmt = (
                sa.select(jobs_t)
                .where(jobs_t.c.due_us <= micros(now), jobs_t.c.owner.in_(list(self._handlers)))
                .order_by(jobs_t.c.due_us, jobs_t.c.name)
                .limit(self._batch)
            )
            async with transaction(self._engine, write=False) as conn:
                rows = (await conn.execute(stmt)).mappings().all()
            by_owner: dict[str, list[RowMapping]] = {}
            for row in rows:
                by_owner.setdefault(str(row["owner"]), []).append(row)
            async with anyio.create_task_group() as group:
                for owner, owned in by_owner.items():
                    for i in range(0, len(owned), self._chunk):
                        group.start_soon(self._fire_chunk, owner, owned[i : i + self._chunk], limiter)
            fired += len(rows)
            if len(rows) < self._batch:
                return fired

    async def _fire_chunk(self, owner: str, rows: list[RowMapping], limiter: anyio.CapacityLimiter) -> None:
        jobs = [Job(name=str(r["name"]), due_at=from_micros(r["due_us"]), data=json.loads(r["payload"])) for r in rows]
        batch = self._batch_handlers.get(owner)
        if batch is not None:
            async with limiter:
                try:
                    outcomes = list(await batch(jobs))
                except Exception as exc:
                    outcomes = [outcome_for(exc)] * len(jobs)
                    log.warning(
                        "jobs.handler_failed",
                        owner=owner,
                        jobs=len(jobs),
                        error=f"{type(exc).__name__}: {exc}",
                        exc_info=True,
                    )
            outcomes += [Outcome.RETRY] * (len(jobs) - len(outcomes))
        else:
            outcomes = [Outcome.RETRY] * len(jobs)

            async def one(i: int) -> None:
                async with limiter:
                    outcomes[i] = await self._call(owner, jobs[i])

            async with anyio.create_task_group() as group:
                for i in range(len(jobs)):
                    group.start_soon(one, i)
        await self._settle(owner, rows, outcomes)

    async def _call(self, owner: str, job: Job) -> Outcome:
        try:
            return await self._handlers[owner](job)
        except Exception as exc:
            log.warning(
                "jobs.handler_failed", owner=owner, job=job.name, error=f"{type(exc).__name__}: {exc}", exc_info=True
            )
            return outcome_for(exc)

    async def _settle(self, owner: str, rows: list[RowMapping], outcomes: list[Outcome]) -> None:
        """One transaction for a chunk: done, dropped or exhausted jobs deleted, retries moved on.
        A job rescheduled while it fired has a new revision and stays."""
        done: list[dict[str, Any]] = []
        retries: list[dict[str, Any]] = []
        now = self._clock.now()
        for row, outcome in zip(rows, outcomes, strict=True):
            JOBS_FIRED.labels(owner=owner, outcome=outcome.value.lower()).inc()
            key = {"b_owner": owner, "b_name": str(row["name"]), "b_revision": int(row["revision"])}
            attempts = int(row["attempts"]) + 1
            if outcome is Outcome.RETRY and attempts < self._retry.attempts:
                retry_at = now + self._retry.delay(attempts)
                retries.append({**key, "b_due": micros(retry_at), "b_attempts": attempts})
                continue
            if outcome is Outcome.RETRY:
                log.error("jobs.gave_up", owner=owner, job=key["b_name"], attempts=attempts)
            done.append(key)
        same = sa.and_(
            jobs_t.c.owner == sa.bindparam("b_owner"),
            jobs_t.c.name == sa.bindparam("b_name"),
            jobs_t.c.revision == sa.bindparam("b_revision"),
        )
        async with transaction(self._engine) as conn:
            if done:
                await conn.execute(sa.delete(jobs_t).where(same), done)
            if retries:
                stmt = (
                    sa.update(jobs_t)
                    .where(same)
                    .values(due_us=sa.bindparam("b_due"), attempts=sa.bindparam("b_attempts"))
                )
                await conn.execute(stmt, retries)

    async def run(self) -> None:
        """Fire jobs as they fall due until cancelled (overdue ones first, once)."""
        while True:
            self._wake.clear()
            try:
                await self.fire_due()
                nxt = await self.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("jobs.loop_failed")
                nxt = None
            wait = MAX_IDLE_SECONDS
            if nxt is not None:
                wait = min(wait, max(0.0, (nxt - self._clock.now()).total_seconds()))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that comes
            # as the wake-up does, and stop() then waits for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()


class OwnerScheduler:
    """The JobScheduler port for one owner."""

    def __init__(self, jobs: EmbeddedJobs, owner: str) -> None:
        self._jobs = jobs
        self._owner = owner

    async def schedule(self, job: Job) -> None:
        await self._jobs.schedule(self._owner, job)

    async def cancel(self, name: str) -> None:
        await self._jobs.cancel(self._owner, name)

    async def schedule_many(self, jobs: Sequence[Job]) -> None:
        await self._jobs.schedule_many(self._owner, jobs)

    async def cancel_many(self, names: Sequence[str]) -> None:
        await self._jobs.cancel_many(self._owner, names)


class EmbeddedCron:
    """Embedded mode's cron bindings: each handler runs once at start-up, then every period."""

    def __init__(self, crons: list[Cron]) -> None:
        self._crons = crons
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def idle(self) -> None:
        """Wait until no handler is running (a test settling the pipeline after start-up must not
        return while the start-up round, e.g. the reminder sweeper, is still sending)."""
        await self._idle.wait()

    async def tick(self) -> None:
        """Run every cron handler now (tests, and the first round at start-up)."""
        for cron in self._crons:
            await self._run(cron)

    async def run(self) -> None:
        await asyncio.gather(*(self._loop(cron) for cron in self._crons))

    async def _loop(self, cron: Cron) -> None:
        while True:
            await self._run(cron)
            await asyncio.sleep(cron.every_seconds)

    async def _run(self, cron: Cron) -> None:
        self._running += 1
        self._idle.clear()
        try:
            outcome = await cron.handler()
            if outcome is not Outcome.SUCCESS:
                log.warning("cron.incomplete", binding=cron.binding, outcome=outcome.value)
        except Exception:
            log.exception("cron.failed", binding=cron.binding)
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
