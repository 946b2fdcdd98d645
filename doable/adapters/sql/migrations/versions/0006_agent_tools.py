"""Agent-grade tools: per-occurrence history of repeating series, action tokens (undo records and
bulk confirmations), and who/why on audit entries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "occurrence_records",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("series_id", sa.String(200), nullable=False),
        sa.Column("due_us", sa.BigInteger, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_occurrence_records_series", "occurrence_records", ["user_id", "series_id", "due_us"])
    op.create_table(
        "action_tokens",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_action_tokens_expiry", "action_tokens", ["user_id", "expires_us"])
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("actor", sa.String(32), nullable=True))
        batch.add_column(sa.Column("cause", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("cause")
        batch.drop_column("actor")
    op.drop_table("action_tokens")
    op.drop_table("occurrence_records")
