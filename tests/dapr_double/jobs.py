"""The Jobs API's scheduler: job records in PostgreSQL and the trigger loop.

Behaviour (docs: https://docs.dapr.io/reference/api/jobs_api/ and
https://docs.dapr.io/developing-applications/building-blocks/jobs/jobs-features-concepts/):
* a job belongs to the app id that scheduled it and only that app is triggered,
  with `POST /job/<name>` whose body is the job's `data` as JSON
  (https://docs.dapr.io/developing-applications/building-blocks/jobs/howto-schedule-and-handle-triggered-jobs/);
* a job is never triggered before it is due; `repeats` and `ttl` end it; a one-shot
  job (no schedule) is removed after its trigger;
* a 2xx answer is success; 404 also counts as done (not retried, dapr/dapr
  `pkg/runtime/scheduler/internal/cluster/streamer.go`); any other answer or an
  unreachable app follows the failure policy: `constant` (max_retries, interval)
  or `drop`; with no policy, 3 retries 1 s apart (the interval is configurable
  here so tests need not wait).

Checked at dapr/dapr v1.16.19-v1.18.3: the app channel POSTs `/job/<name>`
(`pkg/channel/http/http_channel.go` constructJobRequest) and maps the HTTP status with
`pkg/messaging/v1/util.go` CodeFromHTTPStatus (any 2xx -> OK, 404 -> NotFound);
`pkg/runtime/scheduler/internal/cluster/streamer.go` invokeApp treats OK and NotFound as
SUCCESS, anything else (or an unreachable app) as FAILED, and the Scheduler's go-etcd-cron
retries FAILED triggers under the job's failure policy, defaulting to constant 1 s x 3
(`internal/scheduler/builder.go` Parse).

Jobs due together are triggered concurrently: daprd handles each trigger the Scheduler streams
to it in a goroutine of its own (`streamer.go` receive: `go func() { ... s.handleJob(...) }()`),
so one slow handler never holds up the others. The trigger loop starts each due job once (a
job whose trigger is still running is not started again) and does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx2

from .apps import AppRegistry
from .clock import Clock
from .schedule import parse_schedule
from .store_pg import PgStore, affected_rows

VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.Value"


@dataclass(frozen=True)
class FailurePolicy:
    drop: bool
    max_retries: int | None  # None: retry forever
    interval: timedelta

    @classmethod
    def from_json(cls, policy: dict[str, Any] | None, default_interval: timedelta) -> FailurePolicy:
        if policy is None:
            return cls(drop=False, max_retries=3, interval=default_interval)
        if "drop" in policy:
            return cls(drop=True, max_retries=0, interval=timedelta(0))
        constant = policy.get("constant") or {}
        seconds = float(str(constant.get("interval", "0s")).rstrip("s") or 0)
        return cls(drop=False, max_retries=constant.get("maxRetries"), interval=timedelta(seconds=seconds))


@dataclass(frozen=True)
class Job:
    """A scheduled job as the double stores it."""

    app_id: str
    name: str
    schedule: str | None
    repeats: int | None
    due_time: str | None
    ttl: str | None
    data_json: str | None
    failure_policy: dict[str, Any] | None
    created_at: datetime
    scheduled_at: datetime
    next_fire_at: datetime
    expires_at: datetime | None
    fired_count: int
    attempt: int
    revision: uuid.UUID

    @property
    def data(self) -> Any:
        return None if self.data_json is None else json.loads(self.data_json)

    def describe(self) -> dict[str, Any]:
        """The GET body: daprd renders the job proto with protojson, so `data` is a
        google.protobuf.Any holding a google.protobuf.Value."""
        body: dict[str, Any] = {"name": self.name}
        if self.schedule is not None:
            body["schedule"] = self.schedule
        if self.repeats is not None:
            body["repeats"] = self.repeats
        if self.due_time is not None:
            body["dueTime"] = self.due_time
        if self.ttl is not None:
            body["ttl"] = self.ttl
        if self.data_json is not None:
            body["data"] = {"@type": VALUE_TYPE_URL, "value": self.data}
        if self.failure_policy is not None:
            body["failurePolicy"] = self.failure_policy
        return body


@dataclass(frozen=True)
class JobTrigger:
    """One attempt to trigger a job (status_code is None if the app was unreachable)."""

    app_id: str
    name: str
    at: datetime
    attempt: int
    body: bytes
    status_code: int | None
    succeeded: bool


class JobExists(Exception):
    """A job with this name exists and `overwrite` was not set."""


def _job(row: asyncpg.Record) -> Job:
    return Job(
        row["app_id"],
        row["name"],
        row["schedule"],
        row["repeats"],
        row["due_time"],
        row["ttl"],
        row["data"],
        None if row["failure_policy"] is None else json.loads(row["failure_policy"]),
        row["created_at"],
        row["scheduled_at"],
        row["next_fire_at"],
        row["expires_at"],
        row["fired_count"],
        row["attempt"],
        row["revision"],
    )


_COLUMNS = (
    "app_id, name, schedule, repeats, due_time, ttl, data::text AS data, failure_policy::text AS failure_policy, "
    "created_at, scheduled_at, next_fire_at, expires_at, fired_count, attempt, revision"
)


class JobService:
    """Stores jobs and triggers them when the clock says they are due."""

    def __init__(
        self,
        pg: PgStore,
        apps: AppRegistry,
        clock: Clock,
        *,
        default_retry_interval: timedelta,
        poll_interval: float,
        auto_tick: bool,
    ) -> None:
        self._pg = pg
        self._apps = apps
        self._clock = clock
        self._default_retry_interval = default_retry_interval
        self._poll_interval = poll_interval
        self._auto_tick = auto_tick
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.triggers: list[JobTrigger] = []
        self.errors: list[BaseException] = []
        self._firing: dict[tuple[str, str], asyncio.Task[None]] = {}

    @property
    def _table(self) -> str:
        return self._pg.table("jobs")

    def start(self) -> None:
        if self._auto_tick:
            self._loop_task = asyncio.create_task(self._run(), name="dapr-double-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for task in list(self._firing.values()):
            task.cancel()
        await asyncio.gather(*self._firing.values(), return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._start_due()
            except Exception as exc:  # keep scheduling; tests can inspect `errors`
                self.errors.append(exc)
            await asyncio.sleep(self._poll_interval)

    async def _start_due(self) -> None:
        """Start the trigger of every due job not already being triggered (real-time mode)."""
        async with self._lock:
            now = self._clock.now()
            for job in await self._due(now):
                key = (job.app_id, job.name)
                if key not in self._firing:
                    task = asyncio.create_task(self._fire_logged(job, now), name=f"dapr-double-job-{job.name}")
                    self._firing[key] = task
                    task.add_done_callback(lambda _t, k=key: self._firing.pop(k, None))

    async def _fire_logged(self, job: Job, now: datetime) -> None:
        try:
            await self._fire(job, now)
        except Exception as exc:
            self.errors.append(exc)

    async def _due(self, now: datetime) -> list[Job]:
        await self._pg.pool.execute(
            f"DELETE FROM {self._table} WHERE expires_at IS NOT NULL AND expires_at < $1 AND next_fire_at > expires_at",
            now,
        )
        rows = await self._pg.pool.fetch(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE next_fire_at <= $1 ORDER BY next_fire_at, app_id, name",
            now,
        )
        return [_job(r) for r in rows]

    async def schedule(
        self,
        app_id: str,
        name: str,
        *,
        schedule: str | None,
        repeats: int | None,
        due_time: str | None,
        ttl: str | None,
        data_json: str | None,
        failure_policy: dict[str, Any] | None,
        overwrite: bool,
        first_fire_at: datetime,
        expires_at: datetime | None,
    ) -> None:
        now = self._clock.now()
        values = (
            app_id, name, schedule, repeats, due_time, ttl, data_json,
            None if failure_policy is None else json.dumps(failure_policy),
            now, first_fire_at, expires_at, uuid.uuid4(),
        )  # fmt: skip
        conflict = (
            "DO UPDATE SET schedule = excluded.schedule, repeats = excluded.repeats, due_time = excluded.due_time, "
            "ttl = excluded.ttl, data = excluded.data, failure_policy = excluded.failure_policy, "
            "created_at = excluded.created_at, scheduled_at = excluded.scheduled_at, "
            "next_fire_at = excluded.next_fire_at, expires_at = excluded.expires_at, fired_count = 0, attempt = 0, "
            "revision = excluded.revision"
            if overwrite
            else "DO NOTHING"
        )
        status = await self._pg.pool.execute(
            f"INSERT INTO {self._table} (app_id, name, schedule, repeats, due_time, ttl, data, failure_policy, "
            "created_at, scheduled_at, next_fire_at, expires_at, revision) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $10, $11, $12) "
            f"ON CONFLICT (app_id, name) {conflict}",
            *values,
        )
        if affected_rows(status) != 1:
            raise JobExists(name)

    async def get(self, app_id: str, name: str) -> Job | None:
        row = await self._pg.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE app_id = $1 AND name = $2", app_id, name
        )
        return None if row is None else _job(row)

    async def delete(self, app_id: str, name: str) -> None:
        await self._pg.pool.execute(f"DELETE FROM {self._table} WHERE app_id = $1 AND name = $2", app_id, name)

    async def list_jobs(self, app_id: str | None = None) -> list[Job]:
        rows = await self._pg.pool.fetch(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE $1::text IS NULL OR app_id = $1 "
            "ORDER BY next_fire_at, app_id, name",
            app_id,
        )
        return [_job(r) for r in rows]

    async def tick(self) -> int:
        """Trigger every job (and retry) that is due now; return how many triggers were sent.

        Loops until nothing is due, so occurrences missed while the clock jumped are
        all delivered (at-least-once, never early).
        """
        sent = 0
        async with self._lock:
            while True:
                now = self._clock.now()
                due = [j for j in await self._due(now) if (j.app_id, j.name) not in self._firing]
                if not due:
                    return sent
                await asyncio.gather(*(self._fire(job, now) for job in due))  # concurrently, as daprd
                sent += len(due)

    async def _fire(self, job: Job, now: datetime) -> None:
        body = b"" if job.data_json is None else job.data_json.encode()
        channel = self._apps.get(job.app_id)
        status: int | None = None
        if channel is not None:
            with contextlib.suppress(httpx2.TransportError):
                response = await channel.request(
                    "POST", f"/job/{job.name.lstrip('/')}", content=body, headers={"content-type": "application/json"}
                )
                status = response.status_code
        succeeded = status is not None and (200 <= status <= 299 or status == 404)
        self.triggers.append(JobTrigger(job.app_id, job.name, now, job.attempt + 1, body, status, succeeded))
        policy = FailurePolicy.from_json(job.failure_policy, self._default_retry_interval)
        if not succeeded and not policy.drop and (policy.max_retries is None or job.attempt < policy.max_retries):
            await self._update(job, attempt=job.attempt + 1, next_fire_at=now + policy.interval)
            return
        await self._complete_trigger(job)

    async def _complete_trigger(self, job: Job) -> None:
        fired = job.fired_count + 1
        upcoming: datetime | None = None
        if job.schedule is not None and (job.repeats is None or fired < job.repeats):
            upcoming = parse_schedule(job.schedule).next_after(job.scheduled_at)
        if upcoming is not None and job.expires_at is not None and upcoming > job.expires_at:
            upcoming = None
        if upcoming is None:
            await self._pg.pool.execute(
                f"DELETE FROM {self._table} WHERE app_id = $1 AND name = $2 AND revision = $3",
                job.app_id,
                job.name,
                job.revision,
            )
            return
        await self._update(job, attempt=0, next_fire_at=upcoming, scheduled_at=upcoming, fired_count=fired)

    async def _update(
        self,
        job: Job,
        *,
        attempt: int,
        next_fire_at: datetime,
        scheduled_at: datetime | None = None,
        fired_count: int | None = None,
    ) -> None:
        # Guarded by `revision` so a job overwritten while it was firing is left alone.
        await self._pg.pool.execute(
            f"UPDATE {self._table} SET attempt = $4, next_fire_at = $5, scheduled_at = $6, fired_count = $7 "
            "WHERE app_id = $1 AND name = $2 AND revision = $3",
            job.app_id,
            job.name,
            job.revision,
            attempt,
            next_fire_at,
            scheduled_at or job.scheduled_at,
            job.fired_count if fired_count is None else fired_count,
        )
