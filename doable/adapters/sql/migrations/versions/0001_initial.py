"""Tasks, tags, per-user counters, profiles, outbox; keyword-search indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TitleKey = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("task_id", sa.BigInteger, nullable=False),
        sa.Column("completed", sa.Boolean, nullable=False),
        sa.Column("priority_rank", sa.SmallInteger, nullable=False),
        sa.Column("title_key", TitleKey, nullable=False),
        sa.Column("search_text", sa.Text, nullable=False),
        sa.Column("due_us", sa.BigInteger, nullable=True),
        sa.Column("due_date", sa.String(10), nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("series_id", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("user_id", "task_id", name="uq_tasks_user_task"),
    )
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_us", "task_id"])
    op.create_index("ix_tasks_user_due", "tasks", ["user_id", "due_us", "task_id"])
    op.create_index("ix_tasks_user_series", "tasks", ["user_id", "series_id"])
    op.create_table(
        "task_tags",
        sa.Column("task_pk", BigPk, sa.ForeignKey("tasks.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_task_tags_user_tag", "task_tags", ["user_id", "tag", "task_pk"])
    op.create_table(
        "user_counters",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("last_task_id", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", BigPk, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("task_id", sa.BigInteger, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published", "seq"])
    op.create_index("ix_outbox_user_task", "outbox", ["user_id", "task_id", "seq"])

    if op.get_bind().dialect.name == "postgresql":
        # Trigram GIN makes substring search (LIKE '%kw%') an index scan.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_tasks_search_trgm ON tasks USING gin (search_text gin_trgm_ops)")
    else:
        # FTS5 with the trigram tokenizer answers substring queries of 3+ characters from an index.
        op.execute(
            "CREATE VIRTUAL TABLE task_search USING fts5("
            "search_text, content='tasks', content_rowid='pk', tokenize='trigram')"
        )
        op.execute(
            "CREATE TRIGGER tasks_search_ai AFTER INSERT ON tasks BEGIN "
            "INSERT INTO task_search(rowid, search_text) VALUES (new.pk, new.search_text); END"
        )
        op.execute(
            "CREATE TRIGGER tasks_search_ad AFTER DELETE ON tasks BEGIN "
            "INSERT INTO task_search(task_search, rowid, search_text) VALUES ('delete', old.pk, old.search_text); END"
        )
        op.execute(
            "CREATE TRIGGER tasks_search_au AFTER UPDATE OF search_text ON tasks BEGIN "
            "INSERT INTO task_search(task_search, rowid, search_text) VALUES ('delete', old.pk, old.search_text); "
            "INSERT INTO task_search(rowid, search_text) VALUES (new.pk, new.search_text); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("tasks_search_ai", "tasks_search_ad", "tasks_search_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS task_search")
    for table in ("outbox", "profiles", "user_counters", "task_tags", "tasks"):
        op.drop_table(table)
