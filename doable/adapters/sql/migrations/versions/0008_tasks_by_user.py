"""Keep each user's task rows together and narrow: the JSON moves to `task_data`, and on
PostgreSQL `tasks` and `task_data` are hash-partitioned by user.

Every list names one user and scans that user's matching rows. On PostgreSQL at 1,000,000 rows the
100,000 rows of one user were interleaved with everyone's across ~38,000 heap blocks of ~630-byte
rows (two thirds of each row the JSON, read only for the page), and a keyword list visited all of
them (bench/README.md, search at scale). Now:

- `task_data (user_id, task_id, data)` holds the JSON; a list reads it for its page only, and a
  `tasks` row is ~190 bytes instead of ~630 (3x fewer blocks per user).
- PostgreSQL: 32 hash partitions of user_id for `tasks` and `task_data`. A user's rows share a
  partition with ~1/32 of the other rows; plans prune to it at plan time, and each index (the
  trigram GIN included) is per partition. The primary key of a partitioned table must contain the
  partition key, so `tasks` is keyed by (pk, user_id) (pk stays unique: one sequence) and
  `task_tags` references (task_pk, user_id), which it already holds.
- SQLite: `task_data` only; its covering index ix_tasks_user_scan (0005) already reads a user's
  entries contiguously.

It runs on an existing database: new tables are filled from the old one in pk order (creation
order, the layout new rows keep), then take its name, indexes, sequence and references. The tables
are locked for the copy (on 2 cores: ~1 min per million rows on PostgreSQL, ~1 min on SQLite).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PARTITIONS = 32

_TASK_COLUMNS = (
    "pk bigint NOT NULL DEFAULT nextval('tasks_pk_seq'::regclass), user_id varchar(128) NOT NULL, "
    "task_id bigint NOT NULL, completed boolean NOT NULL, priority_rank smallint NOT NULL, "
    'title_key text COLLATE "C" NOT NULL, search_text text NOT NULL, due_us bigint, due_date varchar(10), '
    "created_us bigint NOT NULL, updated_us bigint NOT NULL, series_id varchar(200), version integer NOT NULL"
)
_NAMES = (
    "pk, user_id, task_id, completed, priority_rank, title_key, search_text, due_us, due_date, created_us, "
    "updated_us, series_id, version"
)
_INDEXES = (
    "CREATE INDEX ix_tasks_user_created ON tasks (user_id, created_us, task_id)",
    "CREATE INDEX ix_tasks_user_due ON tasks (user_id, due_us, task_id)",
    "CREATE INDEX ix_tasks_user_series ON tasks (user_id, series_id)",
    "CREATE INDEX ix_tasks_search_trgm ON tasks USING gin (search_text gin_trgm_ops)",
)


def _partitions(table: str) -> list[str]:
    return [
        f"CREATE TABLE {table}_p{r:02d} PARTITION OF {table} FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {r})"
        for r in range(PARTITIONS)
    ]


def _postgres_upgrade() -> list[str]:
    return [
        "SET LOCAL maintenance_work_mem = '256MB'",
        "LOCK TABLE tasks, task_tags IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE task_tags DROP CONSTRAINT IF EXISTS task_tags_task_pk_fkey",
        "ALTER SEQUENCE tasks_pk_seq OWNED BY NONE",
        "ALTER TABLE tasks RENAME TO tasks_old",
        f"CREATE TABLE tasks ({_TASK_COLUMNS}) PARTITION BY HASH (user_id)",
        *_partitions("tasks"),
        "CREATE TABLE task_data (user_id varchar(128) NOT NULL, task_id bigint NOT NULL, data text NOT NULL) "
        "PARTITION BY HASH (user_id)",
        *_partitions("task_data"),
        f"INSERT INTO tasks ({_NAMES}) SELECT {_NAMES} FROM tasks_old ORDER BY pk",
        "INSERT INTO task_data (user_id, task_id, data) SELECT user_id, task_id, data FROM tasks_old ORDER BY pk",
        "DROP TABLE tasks_old",
        "ALTER SEQUENCE tasks_pk_seq OWNED BY tasks.pk",
        "ALTER TABLE tasks ADD CONSTRAINT tasks_pkey PRIMARY KEY (pk, user_id)",
        "ALTER TABLE tasks ADD CONSTRAINT uq_tasks_user_task UNIQUE (user_id, task_id)",
        *_INDEXES,
        "ALTER TABLE task_data ADD CONSTRAINT task_data_pkey PRIMARY KEY (user_id, task_id)",
        "ALTER TABLE task_data ADD CONSTRAINT task_data_task_fkey FOREIGN KEY (user_id, task_id) "
        "REFERENCES tasks (user_id, task_id) ON DELETE CASCADE",
        "ALTER TABLE task_tags ADD CONSTRAINT task_tags_task_pk_fkey FOREIGN KEY (task_pk, user_id) "
        "REFERENCES tasks (pk, user_id) ON DELETE CASCADE",
        "ANALYZE tasks",
        "ANALYZE task_data",
    ]


def _postgres_downgrade() -> list[str]:
    return [
        "SET LOCAL maintenance_work_mem = '256MB'",
        "LOCK TABLE tasks, task_data, task_tags IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE task_tags DROP CONSTRAINT IF EXISTS task_tags_task_pk_fkey",
        "ALTER SEQUENCE tasks_pk_seq OWNED BY NONE",
        "ALTER TABLE tasks RENAME TO tasks_new",
        f"CREATE TABLE tasks ({_TASK_COLUMNS}, data text NOT NULL)",
        f"INSERT INTO tasks ({_NAMES}, data) SELECT {', '.join('t.' + n.strip() for n in _NAMES.split(','))}, d.data "
        "FROM tasks_new t JOIN task_data d ON d.user_id = t.user_id AND d.task_id = t.task_id ORDER BY t.pk",
        "DROP TABLE task_data",
        "DROP TABLE tasks_new",
        "ALTER SEQUENCE tasks_pk_seq OWNED BY tasks.pk",
        "ALTER TABLE tasks ADD CONSTRAINT tasks_pkey PRIMARY KEY (pk)",
        "ALTER TABLE tasks ADD CONSTRAINT uq_tasks_user_task UNIQUE (user_id, task_id)",
        *_INDEXES,
        "ALTER TABLE task_tags ADD CONSTRAINT task_tags_task_pk_fkey FOREIGN KEY (task_pk) "
        "REFERENCES tasks (pk) ON DELETE CASCADE",
        "ANALYZE tasks",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _postgres_upgrade():
            op.execute(statement)
        return
    op.execute(
        "CREATE TABLE task_data (user_id VARCHAR(128) NOT NULL, task_id BIGINT NOT NULL, data TEXT NOT NULL, "
        "PRIMARY KEY (user_id, task_id), CONSTRAINT task_data_task_fkey FOREIGN KEY (user_id, task_id) "
        "REFERENCES tasks (user_id, task_id) ON DELETE CASCADE)"
    )
    op.execute("INSERT INTO task_data (user_id, task_id, data) SELECT user_id, task_id, data FROM tasks ORDER BY pk")
    op.execute("ALTER TABLE tasks DROP COLUMN data")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _postgres_downgrade():
            op.execute(statement)
        return
    op.execute("ALTER TABLE tasks ADD COLUMN data TEXT NOT NULL DEFAULT ''")
    op.execute(
        "UPDATE tasks SET data = (SELECT d.data FROM task_data d WHERE d.user_id = tasks.user_id "
        "AND d.task_id = tasks.task_id)"
    )
    op.execute("DROP TABLE task_data")
