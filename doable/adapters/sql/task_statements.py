"""The task service's hot statements, built once (issue 19).

Building a statement per call (`sa.select(...).where(col == value)`) and computing its cache key
cost more than running it: ~3x the time of executing a prebuilt statement with bind parameters,
whose cache key SQLAlchemy memoizes on the object. Inserts and updates take their values as the
execute parameters (a dict of column values), so one statement serves every row. An update's
WHERE binds are named `w_*`: a parameter named after a column is that column's new value."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.schema import OutboxRow, ProfileRow, TaskDataRow, TaskRow, TaskTagRow, UserCounterRow

tasks_t = table_of(TaskRow)
data_t = table_of(TaskDataRow)
tags_t = table_of(TaskTagRow)
counters_t = table_of(UserCounterRow)
profiles_t = table_of(ProfileRow)
outbox_t = table_of(OutboxRow)

_user: sa.BindParameter[str] = sa.bindparam("user_id")
_task: sa.BindParameter[int] = sa.bindparam("task_id")

COUNT_TASKS = sa.select(sa.func.count()).select_from(tasks_t).where(tasks_t.c.user_id == _user)
TASK_DATA = sa.select(data_t.c.data).where(data_t.c.user_id == _user, data_t.c.task_id == _task)
INSERT_TASK = sa.insert(tasks_t).returning(tasks_t.c.pk)
INSERT_DATA = sa.insert(data_t)
INSERT_TAGS = sa.insert(tags_t)
UPDATE_TASK = (
    sa.update(tasks_t)
    .where(
        tasks_t.c.user_id == sa.bindparam("w_user_id"),
        tasks_t.c.task_id == sa.bindparam("w_task_id"),
        tasks_t.c.version == sa.bindparam("w_version"),
    )
    .returning(tasks_t.c.pk)
)
UPDATE_DATA = sa.update(data_t).where(
    data_t.c.user_id == sa.bindparam("w_user_id"), data_t.c.task_id == sa.bindparam("w_task_id")
)
TASKS_DATA = sa.select(data_t.c.user_id, data_t.c.task_id, data_t.c.data).where(
    sa.tuple_(data_t.c.user_id, data_t.c.task_id).in_(sa.bindparam("keys", expanding=True))
)
DELETE_TAGS = sa.delete(tags_t).where(tags_t.c.task_pk == sa.bindparam("task_pk"))
DELETE_TASK = sa.delete(tasks_t).where(
    tasks_t.c.user_id == _user, tasks_t.c.task_id == _task, tasks_t.c.version == sa.bindparam("version")
)
DELETE_DATA = sa.delete(data_t).where(data_t.c.user_id == _user, data_t.c.task_id == _task)
PROFILE = sa.select(profiles_t.c.data).where(profiles_t.c.user_id == _user)
INSERT_OUTBOX = sa.insert(outbox_t)


def _insert(dialect: str, table: sa.Table) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


@functools.cache
def next_id(dialect: str) -> Any:
    """The user's next task id: the counter's row made or bumped, in one statement."""
    stmt = _insert(dialect, counters_t).values(user_id=_user, last_task_id=1)
    return stmt.on_conflict_do_update(
        index_elements=[counters_t.c.user_id], set_={"last_task_id": counters_t.c.last_task_id + 1}
    ).returning(counters_t.c.last_task_id)


@functools.cache
def save_profile(dialect: str) -> Any:
    stmt = _insert(dialect, profiles_t).values(user_id=_user, data=sa.bindparam("data"))
    return stmt.on_conflict_do_update(index_elements=[profiles_t.c.user_id], set_={"data": stmt.excluded.data})
