"""Chat threads and items (the ChatKit store), scoped by user.

Threads and items carry an autoincrement `seq` so lists and cursors follow insertion
order exactly (ChatKit's own timestamps are naive local times, unfit for ordering).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chat_threads",
        sa.Column("seq", BigPk, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_chat_threads_user_seq", "chat_threads", ["user_id", "seq"])
    op.create_table(
        "chat_items",
        sa.Column("seq", BigPk, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("chat_threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("thread_id", "id", name="uq_chat_items_thread_item"),
    )
    op.create_index("ix_chat_items_thread_seq", "chat_items", ["thread_id", "seq"])


def downgrade() -> None:
    op.drop_table("chat_items")
    op.drop_table("chat_threads")
