"""Dapr implementations of the messaging ports: publishing and exact-time jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

import anyio

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.operations import BulkEntry
from doable.platform.metrics import EVENTS_PUBLISHED
from doable.platform.topology import pubsub_for
from doable.ports.messages import Job, Outgoing

T = TypeVar("T")


def traceparent(trace_id: str | None) -> str | None:
    """A W3C traceparent carrying our trace id, so Dapr's CloudEvent keeps it (traceid)."""
    if not trace_id or len(trace_id) != 32:
        return None
    return f"00-{trace_id}-{'0' * 15}1-01"


class DaprPublisher:
    """Publishes through the sidecar: Dapr wraps the data in a CloudEvent whose id is our
    event id (stable across redeliveries) and keys Kafka messages by user (per-user order).
    Each topic goes through its own component (topology.pubsub_for) unless `pubsub` names one."""

    def __init__(self, client: DaprClient, pubsub: str | None = None) -> None:
        self._client = client
        self._pubsub = pubsub

    async def publish(
        self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None
    ) -> None:
        event_type = f"doable.{topic}.{data.get('event_type', 'event')}"
        await self._client.publish(
            self._pubsub or pubsub_for(topic),
            topic,
            data,
            partition_key=key,
            event_id=event_id,
            event_type=event_type,
            traceparent=traceparent(trace_id),
        )
        EVENTS_PUBLISHED.labels(topic=topic).inc()

    async def publish_batch(self, topic: str, entries: Sequence[Outgoing]) -> set[str]:
        """Dapr bulk publish: one call for the batch; the event ids the sidecar did not take.
        Each entry keeps its own trace (`cloudevent.traceparent`)."""
        failed = await self._client.publish_bulk(
            self._pubsub or pubsub_for(topic),
            topic,
            [
                BulkEntry(
                    event_id=e.event_id,
                    data=e.data,
                    partition_key=e.key,
                    event_type=f"doable.{topic}.{e.data.get('event_type', 'event')}",
                    traceparent=traceparent(e.trace_id),
                )
                for e in entries
            ],
        )
        EVENTS_PUBLISHED.labels(topic=topic).inc(len(entries) - len(failed))
        return failed


class DaprJobScheduler:
    """Dapr Jobs API: one-shot jobs at an exact time. The Scheduler delivers a job only to the
    app-id that scheduled it, as POST /job/{name} carrying the job's data."""

    def __init__(self, client: DaprClient) -> None:
        self._client = client

    async def schedule(self, job: Job) -> None:
        due = job.due_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # RFC 3339, as Go parses it
        await self._client.schedule_job(job.name, due_time=due, data=job.data)

    async def cancel(self, name: str) -> None:
        await self._client.delete_job(name)

    async def schedule_many(self, jobs: Sequence[Job]) -> None:
        """`schedule` for many jobs (a bulk's reminders): the Jobs API takes one job per call, so
        the calls run concurrently, JOB_CALLS_IN_FLIGHT at a time; raises the first failure once
        all have been tried (scheduling overwrites, so a retry of the batch repeats no harm)."""
        await _each(jobs, self.schedule)

    async def cancel_many(self, names: Sequence[str]) -> None:
        """`cancel` for many jobs, concurrently (as `schedule_many`)."""
        await _each(names, self.cancel)


# Jobs API calls of one batch in flight at once: enough to hide the sidecar's round trip, few
# enough to leave its connection pool to the handlers of other requests.
JOB_CALLS_IN_FLIGHT = 16


async def _each(items: Sequence[T], call: Callable[[T], Awaitable[None]]) -> None:
    limiter = anyio.CapacityLimiter(JOB_CALLS_IN_FLIGHT)

    async def one(item: T) -> None:
        async with limiter:
            await call(item)

    results = await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
