"""Workers: series links, embedded jobs, processed messages, dead letters, the reminders ledger,
notifications inbox, webhooks and their deliveries, audit history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "series_links",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("series_id", sa.String(200), primary_key=True),
        sa.Column("after_us", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.BigInteger, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "scheduled_jobs",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("due_us", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_scheduled_jobs_due", "scheduled_jobs", ["due_us"])
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(64), primary_key=True),
        sa.Column("message_id", sa.String(200), primary_key=True),
        sa.Column("processed_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_processed_messages_at", "processed_messages", ["processed_us"])
    op.create_table(
        "dead_letters",
        sa.Column("id", BigPk, primary_key=True, autoincrement=True),
        sa.Column("subscription", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "reminder_schedule",
        sa.Column("job_name", sa.String(200), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("task_id", sa.BigInteger, nullable=False),
        sa.Column("reminder_key", sa.String(64), nullable=False),
        sa.Column("fire_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_reminder_schedule_task", "reminder_schedule", ["user_id", "task_id"])
    op.create_index("ix_reminder_schedule_fire", "reminder_schedule", ["fire_us"])
    op.create_table(
        "reminders_sent",
        sa.Column("job_name", sa.String(200), primary_key=True),
        sa.Column("fire_us", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("task_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_us", sa.BigInteger, nullable=False),
        sa.Column("done_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "notifications",
        sa.Column("id", BigPk, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("task_id", sa.BigInteger, nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("read_us", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("user_id", "source_id", name="uq_notifications_user_source"),
    )
    op.create_index("ix_notifications_user_id", "notifications", ["user_id", "id"])
    op.create_table(
        "webhooks",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigPk, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("notification_id", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("user_id", "notification_id", name="uq_webhook_deliveries_notification"),
    )
    op.create_index("ix_webhook_deliveries_user", "webhook_deliveries", ["user_id", "id"])
    op.create_table(
        "audit_events",
        sa.Column("id", BigPk, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("task_id", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("occurred_us", sa.BigInteger, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("changed", sa.Text, nullable=False),
        sa.Column("task_data", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_events_user", "audit_events", ["user_id", "id"])
    op.create_index("ix_audit_events_user_task", "audit_events", ["user_id", "task_id", "id"])


def downgrade() -> None:
    for table in (
        "audit_events",
        "webhook_deliveries",
        "webhooks",
        "notifications",
        "reminders_sent",
        "reminder_schedule",
        "dead_letters",
        "processed_messages",
        "scheduled_jobs",
        "series_links",
    ):
        op.drop_table(table)
