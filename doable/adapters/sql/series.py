"""Series links inside the task unit of work: the key that makes "create the next occurrence" idempotent."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.transactions import SqlConnection
from doable.adapters.sql.worker_schema import SeriesLinkRow
from doable.domain.errors import Conflict
from doable.domain.query import micros

links_t = table_of(SeriesLinkRow)


class SqlSeriesLinks:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def successor(self, user_id: str, series_id: str, after: datetime) -> int | None:
        stmt = sa.select(links_t.c.task_id).where(
            links_t.c.user_id == user_id, links_t.c.series_id == series_id, links_t.c.after_us == micros(after)
        )
        return (await self._conn.execute(stmt)).scalar_one_or_none()

    async def link(self, user_id: str, series_id: str, after: datetime, task_id: int, at: datetime) -> None:
        try:
            await self._conn.execute(
                sa.insert(links_t).values(
                    user_id=user_id, series_id=series_id, after_us=micros(after), task_id=task_id, created_us=micros(at)
                )
            )
        except IntegrityError:
            # A concurrent delivery of the same completion won; the unit of work retries and finds it.
            raise Conflict(f"series {series_id} already continued after this occurrence") from None

    async def unlink(self, user_id: str, series_id: str, after: datetime) -> None:
        await self._conn.execute(
            sa.delete(links_t).where(
                links_t.c.user_id == user_id, links_t.c.series_id == series_id, links_t.c.after_us == micros(after)
            )
        )
