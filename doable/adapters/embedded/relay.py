"""The outbox relay: publishes recorded task events to `task-events` and `task-updates`.

Every change commits its task event to the outbox in the same transaction, so the user's write
never depends on the broker. The relay publishes pending events as one batch per
topic, in order per user (the message key), marks them published only afterwards, and leaves failed ones pending for the next round:
an event is delivered at least once and never lost; consumers deduplicate on the event id.
It wakes right after commits (`CommitSignal`) and also polls, for writes from other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import structlog

from doable.domain.events import TaskEvent
from doable.platform import topology
from doable.platform.metrics import EVENTS_PUBLISH_FAILED, OUTBOX_DEPTH
from doable.ports import (
    EventOutbox,
    EventPublisher,
    IdempotencyKeys,
    OutboxReader,
    OutboxRecord,
    ProfileRepository,
    SeriesLinks,
    TaskRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)
from doable.ports.messages import Outgoing, publish_many

log = structlog.get_logger("doable.relay")

TOPICS = (topology.TASK_EVENTS, topology.TASK_UPDATES)


@dataclass(frozen=True)
class DrainResult:
    published: int
    failed: int


class OutboxRelay:
    def __init__(
        self,
        outbox: OutboxReader,
        publisher: EventPublisher,
        *,
        poll_seconds: float = 2.0,
        batch: int = 500,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._poll = poll_seconds
        self._batch = batch
        self._max_backoff = max_backoff_seconds
        self._wake = asyncio.Event()
        # One drain at a time: the loop and an explicit drain() must not publish the same records twice.
        self._lock = asyncio.Lock()

    def nudge(self) -> None:
        """Something was committed: publish now rather than at the next poll."""
        self._wake.set()

    async def drain(self) -> DrainResult:
        """Publish everything pending now; stop early when a publish fails."""
        async with self._lock:
            return await self._drain()

    async def _drain(self) -> DrainResult:
        published = failed = 0
        while True:
            records = await self._outbox.pending(self._batch)
            if not records:
                break
            ok, bad = await self._publish(records)
            await self._outbox.mark_published(ok)
            await self._outbox.mark_failed(bad)
            published += len(ok)
            failed += len(bad)
            if bad or len(records) < self._batch:
                break
        OUTBOX_DEPTH.set(await self._outbox.depth())
        return DrainResult(published=published, failed=failed)

    async def run(self) -> None:
        """Relay until cancelled: after every nudge, every poll interval, with backoff on failures."""
        failures = 0
        while True:
            self._wake.clear()
            try:
                result = await self.drain()
                failures = failures + 1 if result.failed else 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("relay.drain_failed", failures=failures)
            delay = min(self._max_backoff, self._poll * 2 ** (failures - 1)) if failures else self._poll
            if failures:
                # After a failure, wait out the backoff even if commits keep nudging.
                await asyncio.sleep(delay)
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that comes
            # as the wake-up does, and stop() then waits for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _publish(self, records: list[OutboxRecord]) -> tuple[list[int], list[int]]:
        """(published seqs, failed seqs). A user's records after one that failed stay pending
        behind it, not counted as failed, so they are never delivered out of order."""
        if getattr(self._publisher, "publish_batch", None) is None:
            return await self._publish_chains(records)
        try:
            failed_ids = await publish_task_events(self._publisher, [r.event for r in records])
        except Exception as exc:
            log.warning("relay.publish_failed", records=len(records), error=f"{type(exc).__name__}: {exc}")
            failed_ids = {r.event.event_id for r in records}
        ok: list[int] = []
        bad: list[int] = []
        stopped: set[str] = set()
        for record in records:
            user = record.event.user_id
            if user in stopped:
                continue
            if record.event.event_id in failed_ids:
                log.warning(
                    "relay.publish_failed", seq=record.seq, event_id=record.event.event_id, attempts=record.attempts + 1
                )
                stopped.add(user)
                bad.append(record.seq)
            else:
                ok.append(record.seq)
        return ok, bad

    async def _publish_chains(self, records: list[OutboxRecord]) -> tuple[list[int], list[int]]:
        """A publisher without batches: each user's records one by one, users concurrently."""
        by_user: dict[str, list[OutboxRecord]] = {}
        for record in records:
            by_user.setdefault(record.event.user_id, []).append(record)
        ok: list[int] = []
        bad: list[int] = []

        async def in_order(chain: list[OutboxRecord]) -> None:
            for record in chain:
                try:
                    await publish_task_event(self._publisher, record.event)
                except Exception as exc:
                    # The rest of this user's events wait, so they are never delivered out of order.
                    log.warning(
                        "relay.publish_failed",
                        seq=record.seq,
                        event_id=record.event.event_id,
                        attempts=record.attempts + 1,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    bad.append(record.seq)
                    return
                ok.append(record.seq)

        await asyncio.gather(*(in_order(chain) for chain in by_user.values()))
        return sorted(ok), bad


async def publish_task_events(publisher: EventPublisher, events: list[TaskEvent]) -> set[str]:
    """Recorded task events to each topic the relays feed, keyed by user (per-user order), one
    batch per topic; the event ids not published to every topic."""
    entries = [
        Outgoing(data=e.model_dump(mode="json"), key=e.user_id, event_id=e.event_id, trace_id=e.trace_id)
        for e in events
    ]
    failed: set[str] = set()
    for topic in TOPICS:
        try:
            missed = await publish_many(publisher, topic, [x for x in entries if x.event_id not in failed])
        except Exception:
            EVENTS_PUBLISH_FAILED.labels(topic=topic).inc(len(entries))
            raise
        if missed:
            EVENTS_PUBLISH_FAILED.labels(topic=topic).inc(len(missed))
        failed |= missed
    return failed


async def publish_task_event(publisher: EventPublisher, event: TaskEvent) -> None:
    """One recorded task event to each topic the relays feed, keyed by user (per-user order).
    Shared by this relay and the Dapr outbox's (doable.adapters.dapr.outbox)."""
    data = event.model_dump(mode="json")
    for topic in TOPICS:
        try:
            await publisher.publish(topic, data, key=event.user_id, event_id=event.event_id, trace_id=event.trace_id)
        except Exception:
            EVENTS_PUBLISH_FAILED.labels(topic=topic).inc()
            raise


class CommitSignal:
    """Wraps a unit-of-work factory so that listeners hear about every successful commit
    (the relay's prompt wake-up), without the service knowing about delivery."""

    def __init__(self, inner: UnitOfWorkFactory) -> None:
        self._inner = inner
        self._listeners: list[Callable[[], None]] = []

    def connect(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, *, write: bool = True, lookup: bool = False) -> UnitOfWork:
        return _SignalingUnitOfWork(self._inner(write=write, lookup=lookup), self._committed if write else None)

    def _committed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("relay.commit_listener_failed")


class _SignalingUnitOfWork:
    # Declared for type checkers only: every repository, present or added later, is the inner
    # unit of work's, reached through __getattr__.
    tasks: TaskRepository
    profiles: ProfileRepository
    events: EventOutbox
    series: SeriesLinks
    idempotency: IdempotencyKeys

    def __init__(self, inner: UnitOfWork, on_commit: Callable[[], None] | None) -> None:
        self._inner = inner
        self._on_commit = on_commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        await self._inner.commit()
        if self._on_commit is not None:
            self._on_commit()
