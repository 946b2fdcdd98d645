"""The event-driven half of a process, assembled: outbox relay, bus, job scheduler, cron, the
four workers and the live hub. The composition root (`doable.runtime`) builds it; the API
lifespan starts and stops it.

Embedded mode runs everything in the `doable serve` process over SQL and the in-process bus;
in Dapr mode each worker is its own process (`build_worker_app`) with the sidecar's transport.
Like the composition root, this module may import every layer; nothing imports it but the root
and the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.domain.clock import Clock, SystemClock
from doable.events.inprocess import InProcessBus, RetryPolicy
from doable.events.relay import OutboxRelay
from doable.history import AuditStore, History
from doable.inbox import Inbox, InboxStore, WebhookStore
from doable.jobs.embedded import EmbeddedCron, EmbeddedJobs
from doable.live import LiveHub
from doable.messaging import Cron, DeadLetterSink, EventPublisher, JobScheduler
from doable.ports import OutboxReader
from doable.service import TaskService
from doable.settings import Settings
from doable.storage.sql.audit import SqlAuditLog
from doable.storage.sql.delivery import SqlDeadLetters, SqlProcessedMessages
from doable.storage.sql.engine import create_engine, ping
from doable.storage.sql.inbox import SqlInbox
from doable.storage.sql.reminders import SqlReminderLedger
from workers.app import create_worker_app
from workers.idempotency import ProcessedMessages
from workers.notifications import WebhookPolicy
from workers.recurrence import OccurrenceCreator, ServiceOccurrences
from workers.registry import Worker, WorkerOptions, WorkerPorts, build_worker, build_workers
from workers.reminders import ReminderLedger, ReminderOptions, ServiceTaskLookup, TaskLookup
from workers.webhooks import WebhookSender

log = structlog.get_logger("doable.delivery")


def worker_options(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        reminders=ReminderOptions(
            sweep_grace=timedelta(seconds=settings.reminder_sweep_grace_seconds),
            claim_lease=timedelta(seconds=settings.reminder_claim_lease_seconds),
        ),
        webhooks=WebhookPolicy(
            max_attempts=settings.webhook_max_attempts,
            first_delay=timedelta(seconds=settings.webhook_retry_seconds),
        ),
        sweep_every_seconds=settings.reminder_sweep_seconds,
        processed_ttl=timedelta(hours=settings.processed_ttl_hours),
    )


def read_side(engine: AsyncEngine, clock: Clock, settings: Settings) -> tuple[Inbox, History]:
    """What the API reads and sets for users: the inbox and webhook, and task history."""
    store = SqlInbox(engine)
    inbox = Inbox(store, store, clock, allow_private_webhooks=settings.webhook_allow_private)
    return inbox, History(SqlAuditLog(engine))


@dataclass
class Delivery:
    bus: InProcessBus
    relay: OutboxRelay
    jobs: EmbeddedJobs
    cron: EmbeddedCron
    hub: LiveHub
    workers: dict[str, Worker]
    sender: WebhookSender
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        """Run the relay, the job loop and the cron in the background (idempotent)."""
        if self._tasks:
            return
        loops = {"relay": self.relay.run(), "jobs": self.jobs.run(), "cron": self.cron.run()}
        self._tasks = [asyncio.create_task(coro, name=f"doable-{name}") for name, coro in loops.items()]
        log.info("delivery.started", workers=sorted(self.workers))

    async def stop(self) -> None:
        """Stop the loops, then the bus; anything unfinished is redelivered from the outbox and
        the job table on the next start."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.bus.aclose()
        await self.sender.aclose()
        if tasks:
            log.info("delivery.stopped")

    async def settle(self, *, max_rounds: int = 100) -> None:
        """Run until idle: publish the outbox, let every handler finish, fire due jobs; repeat
        until nothing moves. For tests (with a ManualClock) and tools; the loops do this live."""
        for _ in range(max_rounds):
            published = (await self.relay.drain()).published
            await self.bus.idle()
            fired = await self.jobs.fire_due()
            await self.bus.idle()
            if not published and not fired:
                return
        raise RuntimeError(f"delivery did not settle in {max_rounds} rounds")


def build_embedded(
    *,
    engine: AsyncEngine,
    service: TaskService,
    outbox: OutboxReader,
    clock: Clock,
    settings: Settings,
    hub: LiveHub,
    sender: WebhookSender | None = None,
) -> Delivery:
    """Everything event-driven for `doable serve` in embedded mode, wired but not started."""
    dead_letters = SqlDeadLetters(engine)
    bus = InProcessBus(clock, retry=RetryPolicy(attempts=settings.event_retry_attempts), dead_letters=dead_letters)
    jobs = EmbeddedJobs(engine, clock)
    inbox_store = SqlInbox(engine)
    sender = sender or WebhookSender(
        timeout=settings.webhook_timeout_seconds, allow_private=settings.webhook_allow_private
    )
    ports = WorkerPorts(
        clock=clock,
        publisher=bus,
        processed=SqlProcessedMessages(engine),
        jobs=jobs.scheduler,
        tasks=ServiceTaskLookup(service),
        occurrences=ServiceOccurrences(service),
        ledger=SqlReminderLedger(engine),
        inbox=inbox_store,
        webhooks=inbox_store,
        sender=sender,
        audit=SqlAuditLog(engine),
        dead_letters=dead_letters,
        options=worker_options(settings),
    )
    workers = build_workers(ports)
    for sub in hub.subscriptions():
        bus.subscribe(sub)
    crons: list[Cron] = []
    for worker in workers.values():
        for sub in worker.subscriptions:
            bus.subscribe(sub)
        if worker.on_job is not None:
            jobs.handle(worker.name, worker.on_job, worker.on_jobs)
        crons.extend(worker.crons)
    relay = OutboxRelay(outbox, bus, poll_seconds=settings.outbox_poll_seconds)
    return Delivery(bus=bus, relay=relay, jobs=jobs, cron=EmbeddedCron(crons), hub=hub, workers=workers, sender=sender)


@dataclass(frozen=True)
class WorkerStores:
    """A worker's own records (Dapr mode: in the state store, doable.storage.dapr_*)."""

    processed: ProcessedMessages
    ledger: ReminderLedger
    inbox: InboxStore
    webhooks: WebhookStore
    audit: AuditStore
    dead_letters: DeadLetterSink


@dataclass(frozen=True)
class WorkerTransport:
    """What a worker process gets from its transport (Dapr mode: the sidecar adapters).

    `tasks` is needed by the reminders worker and `occurrences` by the recurrence worker (both
    reach the API by service invocation in Dapr mode); `checks` feed /readyz. `stores`, when
    given, replace the SQL stores on DOABLE_DATABASE_URL."""

    publisher: EventPublisher
    jobs: JobScheduler
    tasks: TaskLookup | None = None
    occurrences: OccurrenceCreator | None = None
    checks: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    aclose: Callable[[], Awaitable[None]] | None = None
    stores: WorkerStores | None = None


def build_worker_app(
    settings: Settings,
    name: str,
    transport: WorkerTransport,
    *,
    clock: Clock | None = None,
    sender: WebhookSender | None = None,
) -> FastAPI:
    """`doable worker NAME`'s app: the worker over `transport` and its stores (the transport's,
    else SQL on the database the API migrated). Builds nothing that blocks; the engine connects
    on first use."""
    clock = clock or SystemClock()
    engine = None
    stores = transport.stores
    if stores is None:
        engine = create_engine(
            settings.effective_database_url, schema=settings.database_schema, timeout=settings.database_timeout_seconds
        )
        inbox_store = SqlInbox(engine)
        stores = WorkerStores(
            processed=SqlProcessedMessages(engine),
            ledger=SqlReminderLedger(engine),
            inbox=inbox_store,
            webhooks=inbox_store,
            audit=SqlAuditLog(engine),
            dead_letters=SqlDeadLetters(engine),
        )
    sender = sender or WebhookSender(
        timeout=settings.webhook_timeout_seconds, allow_private=settings.webhook_allow_private
    )
    ports = WorkerPorts(
        clock=clock,
        publisher=transport.publisher,
        processed=stores.processed,
        jobs=lambda _name: transport.jobs,
        tasks=transport.tasks,
        occurrences=transport.occurrences,
        ledger=stores.ledger,
        inbox=stores.inbox,
        webhooks=stores.webhooks,
        sender=sender,
        audit=stores.audit,
        dead_letters=stores.dead_letters,
        options=worker_options(settings),
    )
    worker = build_worker(name, ports)
    checks: dict[str, Callable[[], Awaitable[None]]] = dict(transport.checks)
    if engine is not None:
        sql = engine
        checks = {"database": lambda: ping(sql), **checks}

    async def readiness() -> dict[str, str]:
        results: dict[str, str] = {}
        for check_name, check in checks.items():
            try:
                await check()
                results[check_name] = "ok"
            except Exception as exc:  # not ready; the reason goes to the log only
                log.warning("readiness.failed", check=check_name, error=type(exc).__name__)
                results[check_name] = "unavailable"
        return results

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("worker.started", worker=name, app_id=worker.app_id)
        try:
            yield
        finally:
            await sender.aclose()
            if transport.aclose is not None:
                await transport.aclose()
            if engine is not None:
                await engine.dispose()

    token = settings.app_api_token.get_secret_value() if settings.app_api_token else None
    return create_worker_app(worker, clock=clock, readiness=readiness, lifespan=lifespan, app_token=token)
