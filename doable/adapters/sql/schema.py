"""Tables. Each task is stored whole as JSON (`task_data.data`) beside the scalar columns that
queries filter and sort on (`tasks`), so reading a task never depends on column mapping and
the sort keys are exactly the domain's (`doable.domain.query.sort_value`). The JSON lives in a
table of its own so that `tasks`, which every list scans, stays narrow (3x fewer heap blocks per
user); a list reads the JSON of its page only (docs/read-paths.md). On PostgreSQL both tables are
hash-partitioned by user (migration 0008)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Binary collation so title order matches Python's string order on every store.
TitleKey = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "task_id", name="uq_tasks_user_task"),
        sa.Index("ix_tasks_user_created", "user_id", "created_us", "task_id"),
        sa.Index("ix_tasks_user_due", "user_id", "due_us", "task_id"),
        sa.Index("ix_tasks_user_series", "user_id", "series_id"),
    )

    pk: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    completed: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    priority_rank: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    title_key: str = Field(sa_column=sa.Column(TitleKey, nullable=False))
    search_text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    due_us: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    due_date: str | None = Field(default=None, sa_column=sa.Column(sa.String(10), nullable=True))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    series_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))
    version: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))


class TaskDataRow(SQLModel, table=True):
    """The task as JSON, one row per row of `tasks` (written and removed with it)."""

    __tablename__ = "task_data"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["user_id", "task_id"], ["tasks.user_id", "tasks.task_id"], name="task_data_task_fkey", ondelete="CASCADE"
        ),
    )

    user_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class TaskTagRow(SQLModel, table=True):
    __tablename__ = "task_tags"
    __table_args__ = (sa.Index("ix_task_tags_user_tag", "user_id", "tag", "task_pk"),)

    task_pk: int = Field(sa_column=sa.Column(BigInt, sa.ForeignKey("tasks.pk", ondelete="CASCADE"), primary_key=True))
    tag: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))


class UserCounterRow(SQLModel, table=True):
    __tablename__ = "user_counters"

    user_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    last_task_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class ProfileRow(SQLModel, table=True):
    __tablename__ = "profiles"

    user_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True))
    data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_pending", "published", "seq"),
        sa.Index("ix_outbox_user_task", "user_id", "task_id", "seq"),
    )

    seq: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    event_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    published: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


metadata = SQLModel.metadata


class ChatThreadRow(SQLModel, table=True):
    """A ChatKit thread (ThreadMetadata as JSON in `data`), owned by one user."""

    __tablename__ = "chat_threads"
    __table_args__ = (sa.Index("ix_chat_threads_user_seq", "user_id", "seq"),)

    seq: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class ChatItemRow(SQLModel, table=True):
    """One ChatKit thread item (as JSON in `data`), in insertion order (`seq`)."""

    __tablename__ = "chat_items"
    __table_args__ = (
        sa.UniqueConstraint("thread_id", "id", name="uq_chat_items_thread_item"),
        sa.Index("ix_chat_items_thread_seq", "thread_id", "seq"),
    )

    seq: int | None = Field(default=None, sa_column=sa.Column(BigInt, primary_key=True, autoincrement=True))
    id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    thread_id: str = Field(
        sa_column=sa.Column(sa.String(64), sa.ForeignKey("chat_threads.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    created_us: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
