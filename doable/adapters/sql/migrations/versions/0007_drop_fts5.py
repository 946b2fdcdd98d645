"""SQLite: drop the FTS5 trigram table `task_search` and its three triggers.

Nothing reads it since 0005: keyword search within a user's tasks is `instr(search_text, kw)` over
the covering index ix_tasks_user_scan, bounded by the user's task count, while FTS5 candidates span
every user's rows (bench/README.md, search at scale). The triggers still cost every insert, update
of the text and delete of a task a second write into the FTS index. PostgreSQL never had it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TRIGGERS = ("tasks_search_ai", "tasks_search_ad", "tasks_search_au")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS task_search")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # As 0001 created it, filled from the rows as they are now.
    op.execute(
        "CREATE VIRTUAL TABLE task_search USING fts5("
        "search_text, content='tasks', content_rowid='pk', tokenize='trigram')"
    )
    op.execute("INSERT INTO task_search(task_search) VALUES ('rebuild')")
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
