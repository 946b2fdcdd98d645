"""Which handlers make up each worker: subscriptions, job handler and cron, by worker name.

The same `Worker` runs in-process under `doable serve` (embedded) and as its own Dapr app under
`doable worker NAME` (see `workers.app`). Subscription names are unique across all workers, as
embedded mode puts them on one bus; each is also the consumer name for deduplication.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from doable.domain.clock import Clock
from doable.platform import topology
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
from doable.ports.messages import BatchHandler, Cron, Handler, JobBatchHandler, JobHandler, Message, Subscription
from workers.audit import Audit
from workers.dead_letters import DeadLetters
from workers.idempotency import Deduplicator, never
from workers.notifications import Notifications, WebhookPolicy
from workers.recurrence import Recurrence
from workers.reminders import ReminderOptions, Reminders
from workers.webhooks import WebhookSender

WORKER_NAMES = tuple(topology.WORKER_APP_IDS)
T = TypeVar("T")


@dataclass(frozen=True)
class Worker:
    name: str
    app_id: str
    subscriptions: tuple[Subscription, ...]
    on_job: JobHandler | None = None
    crons: tuple[Cron, ...] = ()
    # The batch form of `on_job`, for jobs that fell due together (embedded mode's job loop).
    on_jobs: JobBatchHandler | None = None


@dataclass(frozen=True)
class WorkerOptions:
    reminders: ReminderOptions = field(default_factory=ReminderOptions)
    webhooks: WebhookPolicy = field(default_factory=WebhookPolicy)
    sweep_every_seconds: float = 60.0
    processed_ttl: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class WorkerPorts:
    """What the handler sets need. A process fills in what its workers use: `doable serve`
    everything, a Dapr worker process only its own worker's ports."""

    clock: Clock
    publisher: EventPublisher
    processed: ProcessedMessages
    # The JobScheduler of one worker's app: Dapr delivers a job only to the app that scheduled it.
    jobs: Callable[[str], JobScheduler] | None = None
    tasks: TaskLookup | None = None
    occurrences: OccurrenceCreator | None = None
    ledger: ReminderLedger | None = None
    inbox: InboxStore | None = None
    webhooks: WebhookStore | None = None
    sender: WebhookSender | None = None
    audit: AuditStore | None = None
    dead_letters: DeadLetterSink | None = None
    options: WorkerOptions = field(default_factory=WorkerOptions)


def build_worker(name: str, ports: WorkerPorts) -> Worker:
    """The handler set of worker `name` (one of WORKER_NAMES)."""
    if name not in topology.WORKER_APP_IDS:
        raise ValueError(f"unknown worker {name!r}; choose one of {', '.join(WORKER_NAMES)}")
    return _BUILDERS[name](_Subscriber(name, ports), ports)


class _Subscriber:
    """Subscriptions of one worker, deduplicated per subscription (`Deduplicator`)."""

    def __init__(self, worker: str, ports: WorkerPorts) -> None:
        self.worker = worker
        self.app_id = topology.WORKER_APP_IDS[worker]
        self._dedupe = Deduplicator(ports.processed, ports.clock, ttl=ports.options.processed_ttl)

    def __call__(
        self,
        topic: str,
        handler: Handler,
        needs_record: Callable[[Message], bool] | None = None,
        batch: BatchHandler | None = None,
    ) -> Subscription:
        name = f"{self.worker}-{topic}"
        return Subscription(
            topic=topic,
            handler=self._dedupe.wrap(name, handler, needs_record=needs_record),
            name=name,
            batch_handler=self._dedupe.wrap_batch(name, batch, needs_record=needs_record) if batch else None,
        )


def _reminders(subscribe: _Subscriber, ports: WorkerPorts) -> Worker:
    name = subscribe.worker
    reminders = Reminders(
        _need(ports.ledger, name, "ledger"),
        _need(ports.jobs, name, "jobs")(name),
        _need(ports.tasks, name, "tasks"),
        ports.publisher,
        ports.clock,
        ports.options.reminders,
    )
    return Worker(
        name=name,
        app_id=subscribe.app_id,
        # Idempotent by itself: it schedules what the task, read afresh, wants now.
        subscriptions=(subscribe(topology.TASK_EVENTS, reminders.on_task_event, never, reminders.on_task_events),),
        on_job=reminders.on_job,
        on_jobs=reminders.on_jobs,
        crons=(Cron(topology.REMINDER_SWEEP_BINDING, reminders.sweep, ports.options.sweep_every_seconds),),
    )


def _notifications(subscribe: _Subscriber, ports: WorkerPorts) -> Worker:
    name = subscribe.worker
    notifications = Notifications(
        _need(ports.inbox, name, "inbox"),
        _need(ports.webhooks, name, "webhooks"),
        ports.publisher,
        _need(ports.jobs, name, "jobs")(name),
        _need(ports.sender, name, "sender"),
        ports.clock,
        ports.options.webhooks,
    )
    return Worker(
        name=name,
        app_id=subscribe.app_id,
        subscriptions=(subscribe(topology.REMINDERS, notifications.on_reminder, batch=notifications.on_reminders),),
        on_job=notifications.on_job,
    )


def _recurrence(subscribe: _Subscriber, ports: WorkerPorts) -> Worker:
    recurrence = Recurrence(_need(ports.occurrences, subscribe.worker, "occurrences"))
    return Worker(
        name=subscribe.worker,
        app_id=subscribe.app_id,
        subscriptions=(
            subscribe(topology.TASK_EVENTS, recurrence.on_task_event, recurrence.acts_on, recurrence.on_task_events),
        ),
    )


def _audit(subscribe: _Subscriber, ports: WorkerPorts) -> Worker:
    name = subscribe.worker
    audit = Audit(_need(ports.audit, name, "audit"))
    dead_letters = DeadLetters(_need(ports.dead_letters, name, "dead_letters"), ports.clock)
    # The dead-letter topic's consumer (Dapr mode; embedded, the bus records dead letters itself).
    # Not deduplicated: its record is idempotent by message id, and it tells a redelivery apart.
    dead_letter_sub = Subscription(
        topic=topology.DEAD_LETTER,
        handler=dead_letters.on_dead_letter,
        name=f"{name}-{topology.DEAD_LETTER}",
        dead_letters=False,
    )
    return Worker(
        name=name,
        app_id=subscribe.app_id,
        # Idempotent by itself: an entry is keyed by its event id.
        subscriptions=(subscribe(topology.TASK_EVENTS, audit.on_task_event, never, audit.on_task_events), dead_letter_sub),
    )


_BUILDERS: dict[str, Callable[[_Subscriber, WorkerPorts], Worker]] = {
    "reminders": _reminders,
    "notifications": _notifications,
    "recurrence": _recurrence,
    "audit": _audit,
}


def build_workers(ports: WorkerPorts) -> dict[str, Worker]:
    return {name: build_worker(name, ports) for name in WORKER_NAMES}


def _need(value: T | None, worker: str, port: str) -> T:
    if value is None:
        raise ValueError(f"the {worker} worker needs the {port!r} port")
    return value
