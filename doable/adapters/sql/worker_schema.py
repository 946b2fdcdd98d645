"""Tables of the event-driven half (migration 0003): series links, embedded jobs, idempotency
records, dead letters, the reminders ledger, the notification inbox, webhooks and the audit log.

Times are integer microseconds since the epoch (`doable.domain.query.micros`), as in the core tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class SeriesLinkRow(SQLModel, table=True):
    """Records that the occurrence of a series due at `after_us` has a successor (the recurrence idempotency key)."""

    __tablename__ = "series_links"

    user_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    series_id: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    after_us: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    task_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class ScheduledJobRow(SQLModel, table=True):
    """Embedded mode's Jobs API: one row per pending job of an owner (a worker, like a Dapr app-id)."""

    __tablename__ = "scheduled_jobs"
    __table_args__ = (sa.Index("ix_scheduled_jobs_due", "due_us"),)

    owner: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    due_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # Bumped on every overwrite, so a firing that finishes after a reschedule deletes nothing.
    revision: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))


class ProcessedMessageRow(SQLModel, table=True):
    __tablename__ = "processed_messages"
    __table_args__ = (sa.Index("ix_processed_messages_at", "processed_us"),)

    consumer: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    message_id: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    processed_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class DeadLetterRow(SQLModel, table=True):
    __tablename__ = "dead_letters"

    id: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    subscription: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    topic: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    message_id: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    key: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class ReminderScheduleRow(SQLModel, table=True):
    """The reminders worker's record of every reminder it keeps a job for (what the sweeper checks)."""

    __tablename__ = "reminder_schedule"
    __table_args__ = (
        sa.Index("ix_reminder_schedule_task", "user_id", "task_id"),
        sa.Index("ix_reminder_schedule_fire", "fire_us"),
    )

    job_name: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    reminder_key: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    fire_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class ReminderSentRow(SQLModel, table=True):
    """One row per reminder firing (job name + fire time): claimed ("sending"), "sent" or "skipped"."""

    __tablename__ = "reminders_sent"

    job_name: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    fire_us: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    state: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    claimed_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    done_us: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))


class NotificationRow(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "source_id", name="uq_notifications_user_source"),
        sa.Index("ix_notifications_user_id", "user_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    # The id of the event that caused it (a Reminder Event's event_id): redeliveries collide here.
    source_id: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    task_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    title: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    read_us: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))


class WebhookRow(SQLModel, table=True):
    __tablename__ = "webhooks"

    user_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    secret: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class WebhookDeliveryRow(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "notification_id", name="uq_webhook_deliveries_notification"),
        sa.Index("ix_webhook_deliveries_user", "user_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    notification_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    state: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    last_status: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class AuditEventRow(SQLModel, table=True):
    """Append-only: rows are inserted once per task event and never updated or deleted."""

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_user", "user_id", "id"),
        sa.Index("ix_audit_events_user_task", "user_id", "task_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    event_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    event_type: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    occurred_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    title: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    changed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    task_data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # Migration 0006: who made the change when not the user directly, and why.
    actor: str | None = Field(default=None, sa_column=sa.Column(sa.String(32), nullable=True))
    cause: str | None = Field(default=None, sa_column=sa.Column(sa.String(32), nullable=True))
