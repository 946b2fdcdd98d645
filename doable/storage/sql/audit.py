"""The audit log in SQL: insert-only, one row per task event."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.domain.events import EventType
from doable.domain.query import micros
from doable.history import AuditEntry
from doable.storage.sql.transactions import from_micros, transaction, upsert
from doable.storage.sql.worker_schema import AuditEventRow

audit_t = AuditEventRow.__table__


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        event_id=row.event_id,
        user_id=row.user_id,
        task_id=row.task_id,
        event_type=EventType(row.event_type),
        occurred_at=from_micros(row.occurred_us),
        title=row.title,
        changed=tuple(json.loads(row.changed)),
        task_data=json.loads(row.task_data),
        actor=row.actor,
        cause=row.cause,
    )


class SqlAuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, entry: AuditEntry) -> bool:
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, audit_t).values(
                event_id=entry.event_id,
                user_id=entry.user_id,
                task_id=entry.task_id,
                event_type=entry.event_type.value,
                occurred_us=micros(entry.occurred_at),
                title=entry.title,
                changed=json.dumps(list(entry.changed)),
                task_data=json.dumps(entry.task_data),
                actor=entry.actor,
                cause=entry.cause,
            )
            inserted = (await conn.execute(stmt.on_conflict_do_nothing().returning(audit_t.c.id))).first()
        return inserted is not None

    async def latest(self, user_id: str, task_id: int) -> AuditEntry | None:
        stmt = (
            sa.select(audit_t)
            .where(audit_t.c.user_id == user_id, audit_t.c.task_id == task_id)
            .order_by(audit_t.c.id.desc())
            .limit(1)
        )
        async with transaction(self._engine, write=False) as conn:
            row = (await conn.execute(stmt)).first()
        return _entry(row) if row is not None else None

    async def history(
        self, user_id: str, *, task_id: int | None, limit: int, before_id: int | None
    ) -> list[AuditEntry]:
        stmt = sa.select(audit_t).where(audit_t.c.user_id == user_id)
        if task_id is not None:
            stmt = stmt.where(audit_t.c.task_id == task_id)
        if before_id is not None:
            stmt = stmt.where(audit_t.c.id < before_id)
        stmt = stmt.order_by(audit_t.c.id.desc()).limit(limit)
        async with transaction(self._engine, write=False) as conn:
            return [_entry(r) for r in (await conn.execute(stmt)).all()]
