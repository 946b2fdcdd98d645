"""The worker-process assembly (`doable worker NAME`, Dapr mode): one worker over a transport
(the sidecar's publisher and job scheduler, from doable.bootstrap.dapr) and its stores (the
transport's, else SQL on the database the API migrated)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from fastapi import FastAPI

from doable.bootstrap.common import sql_engine
from doable.bootstrap.runtime import Check, Close, readiness
from doable.domain.clock import Clock, SystemClock
from doable.platform.settings import Settings
from doable.ports import (
    AuditStore,
    DeadLetterSink,
    EventPublisher,
    InboxStore,
    JobScheduler,
    OccurrenceCreator,
    ProcessedMessages,
    ReminderLedger,
    TaskLookup,
    WebhookStore,
)
from workers.notifications import WebhookPolicy
from workers.registry import WorkerOptions, WorkerPorts, build_worker
from workers.reminders import ReminderOptions
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


@dataclass(frozen=True)
class WorkerStores:
    """A worker's own records (Dapr mode: in the state store, doable.adapters.dapr)."""

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
    checks: dict[str, Check] = field(default_factory=dict)
    aclose: Close | None = None
    stores: WorkerStores | None = None


def _sql_stores(settings: Settings) -> tuple[WorkerStores, dict[str, Check], Close]:
    """The SQL stores on the database the API migrated: the stores, their check, their closer."""
    from doable.adapters.sql.audit import SqlAuditLog
    from doable.adapters.sql.delivery import SqlDeadLetters, SqlProcessedMessages
    from doable.adapters.sql.engine import ping
    from doable.adapters.sql.inbox import SqlInbox
    from doable.adapters.sql.reminders import SqlReminderLedger

    engine = sql_engine(settings)
    inbox_store = SqlInbox(engine)
    stores = WorkerStores(
        processed=SqlProcessedMessages(engine),
        ledger=SqlReminderLedger(engine),
        inbox=inbox_store,
        webhooks=inbox_store,
        audit=SqlAuditLog(engine),
        dead_letters=SqlDeadLetters(engine),
    )

    async def check() -> None:
        await ping(engine)

    return stores, {"database": check}, engine.dispose


def build_worker_app(
    settings: Settings,
    name: str,
    transport: WorkerTransport,
    *,
    clock: Clock | None = None,
    sender: WebhookSender | None = None,
) -> FastAPI:
    """`doable worker NAME`'s app: the worker over `transport` and its stores. Builds nothing
    that blocks; an SQL engine connects on first use."""
    clock = clock or SystemClock()
    stores, checks, close_stores = transport.stores, dict(transport.checks), None
    if stores is None:
        stores, sql_checks, close_stores = _sql_stores(settings)
        checks = {**sql_checks, **checks}
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

    async def ready() -> dict[str, str]:
        return await readiness(checks)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("worker.started", worker=name, app_id=worker.app_id)
        try:
            yield
        finally:
            await sender.aclose()
            if transport.aclose is not None:
                await transport.aclose()
            if close_stores is not None:
                await close_stores()

    token = settings.app_api_token.get_secret_value() if settings.app_api_token else None
    # The sidecar triggers each due job with a request of its own: the jobs that fall due
    # together reach the worker's batch handler as one batch (imported here: embedded serve,
    # which shares worker_options, never needs it).
    from doable.adapters.dapr.deliveries import JobBatches

    on_job = JobBatches(worker.on_jobs) if worker.on_jobs is not None else worker.on_job
    # Here, not at the top: `doable serve` imports this module for `worker_options` only, and a
    # worker app's routes (and the Dapr delivery shapes they answer with) are no part of its start.
    from workers.app import create_worker_app

    return create_worker_app(worker, clock=clock, readiness=ready, lifespan=lifespan, app_token=token, on_job=on_job)
