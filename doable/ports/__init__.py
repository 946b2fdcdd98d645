"""Ports: every Protocol an adapter implements, in one place.

- `tasks`: the task service's storage (repositories, unit of work, tokens, idempotency keys).
- `events`: delivery (publisher, dead-letter sink, job scheduler) and the outbox as relayed.
- `inbox`: the notification inbox and webhooks; `history`: the audit log.
- `workers`: what the workers need besides delivery (processed messages, reminder ledger, task
  lookup, occurrence creator).

Adapters live in `doable.adapters.sql`, `doable.adapters.embedded` and `doable.adapters.dapr`.
"""

from doable.ports.events import DeadLetterSink, EventPublisher, JobScheduler, OutboxReader, OutboxRecord, OutboxView
from doable.ports.history import AuditStore
from doable.ports.inbox import InboxStore, WebhookStore
from doable.ports.tasks import (
    ActionToken,
    ActionTokens,
    EventOutbox,
    IdempotencyKeys,
    OccurrenceLog,
    ProfileRepository,
    SeriesLinks,
    StoredResult,
    TaskRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)
from doable.ports.workers import OccurrenceCreator, ProcessedMessages, ReminderLedger, TaskLookup

__all__ = [
    "ActionToken",
    "ActionTokens",
    "AuditStore",
    "DeadLetterSink",
    "EventOutbox",
    "EventPublisher",
    "IdempotencyKeys",
    "InboxStore",
    "JobScheduler",
    "OccurrenceCreator",
    "OccurrenceLog",
    "OutboxReader",
    "OutboxRecord",
    "OutboxView",
    "ProcessedMessages",
    "ProfileRepository",
    "ReminderLedger",
    "SeriesLinks",
    "StoredResult",
    "TaskLookup",
    "TaskRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "WebhookStore",
]
