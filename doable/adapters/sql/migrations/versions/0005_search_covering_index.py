"""SQLite: a covering index for listing and keyword search within one user's tasks.

Every list is scoped to one user. Through this index a list reads that user's rows in index order
(contiguous, however the rows are spread through the table) and evaluates its filters, sort keys
and keyword (instr on search_text) without touching the table, then reads only the page's rows.
Measured by bench/ (search at scale: 100,000 tasks of one user among 1,000,000 rows): see
bench/README.md. PostgreSQL keeps its trigram index (a B-tree entry cannot hold search_text safely).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = "user_id, completed, priority_rank, due_us, task_id, due_date, created_us, updated_us, search_text"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE INDEX IF NOT EXISTS ix_tasks_user_scan ON tasks ({COLUMNS})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX IF EXISTS ix_tasks_user_scan")
