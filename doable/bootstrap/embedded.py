"""The embedded assembly: one `doable serve` process over SQL (SQLite by default, or PostgreSQL)
with the in-process bus, the SQL job scheduler and the four workers running inside it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.embedded.bus import InProcessBus, RetryPolicy
from doable.adapters.embedded.jobs import EmbeddedCron, EmbeddedJobs
from doable.adapters.embedded.relay import CommitSignal, OutboxRelay
from doable.adapters.sql.audit import SqlAuditLog
from doable.adapters.sql.delivery import SqlDeadLetters, SqlProcessedMessages
from doable.adapters.sql.engine import migrate, ping
from doable.adapters.sql.inbox import SqlInbox
from doable.adapters.sql.reminders import SqlReminderLedger
from doable.adapters.sql.repository import SqlOutboxReader, SqlUnitOfWorkFactory
from doable.bootstrap.common import sql_engine, task_service, token_verifier
from doable.bootstrap.runtime import Runtime
from doable.bootstrap.workers import worker_options
from doable.domain.clock import Clock, SystemClock
from doable.platform.auth import JwksCache, ensure_local_secret
from doable.platform.settings import Settings
from doable.ports import OutboxReader
from doable.ports.messages import Cron
from doable.usecases.history import History
from doable.usecases.inbox import Inbox
from doable.usecases.live import LiveHub
from doable.usecases.service import TaskService
from workers.recurrence import ServiceOccurrences
from workers.registry import Worker, WorkerPorts, build_workers
from workers.reminders import ServiceTaskLookup
from workers.webhooks import WebhookSender

if TYPE_CHECKING:
    from chatkit.store import Store

    from agent.context import ChatContext
    from doable.oauth.store import OAuthStore

log = structlog.get_logger("doable.delivery")


@dataclass
class Delivery:
    """The event-driven half of the process: outbox relay, bus, job scheduler, cron, workers."""

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
            # A cron tick in flight (the start-up round) may still be publishing what it claimed.
            await self.cron.idle()
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


def read_side(engine: AsyncEngine, clock: Clock, settings: Settings) -> tuple[Inbox, History]:
    """What the API reads and sets for users: the inbox and webhook, and task history."""
    store = SqlInbox(engine)
    inbox = Inbox(store, store, clock, allow_private_webhooks=settings.webhook_allow_private)
    return inbox, History(SqlAuditLog(engine))


def _chat_store(engine: AsyncEngine, clock: Clock) -> Store[ChatContext]:
    # Imported when the chat router is built: the chat stack stays out of processes without chat.
    from agent.store import SqlChatStore

    return SqlChatStore(engine, clock)


def _oauth_store(engine: AsyncEngine, max_clients: int) -> OAuthStore:
    from doable.oauth.store import OAuthStore

    return OAuthStore(engine, max_clients=max_clients)


async def build(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """The API process in embedded mode: SQL (migrated here), the token key (generated under the
    data dir when none is configured), the delivery wired but not started."""
    clock = clock or SystemClock()
    engine = sql_engine(settings)
    await migrate(engine)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    jwks = JwksCache(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
    if secret is None and jwks is None:
        secret = ensure_local_secret(settings.data_dir)
    commits = CommitSignal(SqlUnitOfWorkFactory(engine))
    service = task_service(commits, clock, settings)
    outbox = SqlOutboxReader(engine)
    inbox, history = read_side(engine, clock, settings)
    live = LiveHub()
    delivery = build_embedded(engine=engine, service=service, outbox=outbox, clock=clock, settings=settings, hub=live)
    commits.connect(delivery.relay.nudge)
    return Runtime(
        settings=settings,
        clock=clock,
        service=service,
        verifier=token_verifier(settings, secret, jwks),
        outbox=outbox,
        signing_secret=secret,
        inbox=inbox,
        history=history,
        chat_store=lambda: _chat_store(engine, clock),
        standalone=True,
        live=live,
        oauth_store=lambda max_clients: _oauth_store(engine, max_clients),
        checks={"database": lambda: ping(engine)},
        closers=(engine.dispose,),
        sql_engine=engine,
        delivery=delivery,
    )
