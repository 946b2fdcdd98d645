"""The audit log in SQL: insert-only, one row per task event."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.transactions import from_micros, transaction, upsert
from doable.adapters.sql.worker_schema import AuditEventRow
from doable.domain.audit import AuditEntry
from doable.domain.events import EventType, TaskEvent
from doable.domain.query import micros

audit_t = table_of(AuditEventRow)


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


def _values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "event_id": entry.event_id,
        "user_id": entry.user_id,
        "task_id": entry.task_id,
        "event_type": entry.event_type.value,
        "occurred_us": micros(entry.occurred_at),
        "title": entry.title,
        "changed": json.dumps(list(entry.changed)),
        "task_data": json.dumps(entry.task_data),
        "actor": entry.actor,
        "cause": entry.cause,
    }


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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

    async def record_events(self, events: list[TaskEvent]) -> list[str]:
        """Audit `events` (in order) in one transaction: each task's latest entry read once, the
        entries chained from it, inserted together keyed by event id (a redelivered event is
        skipped: ON CONFLICT DO NOTHING). The event ids newly recorded."""
        if not events:
            return []
        recorded: list[str] = []
        async with transaction(self._engine) as conn:
            previous: dict[tuple[str, int], dict[str, Any] | None] = {}
            for user_id in dict.fromkeys(e.user_id for e in events):
                task_ids = sorted({e.task_id for e in events if e.user_id == user_id})
                for chunk in _chunks(task_ids, 500):
                    newest = (
                        sa.select(sa.func.max(audit_t.c.id))
                        .where(audit_t.c.user_id == user_id, audit_t.c.task_id.in_(chunk))
                        .group_by(audit_t.c.task_id)
                    )
                    rows = await conn.execute(
                        sa.select(audit_t.c.task_id, audit_t.c.task_data).where(audit_t.c.id.in_(newest))
                    )
                    for row in rows:
                        previous[(user_id, row.task_id)] = json.loads(row.task_data)
            values: list[dict[str, Any]] = []
            for event in events:
                entry = AuditEntry.of(event, previous.get((event.user_id, event.task_id)))
                previous[(event.user_id, event.task_id)] = event.task_data
                values.append(_values(entry))
            # executemany, not a multi-row VALUES: SQLAlchemy compiles the statement once (cached)
            # and batches the rows itself (insertmanyvalues), ~7x less CPU for a batch of 500.
            stmt = upsert(conn, audit_t).on_conflict_do_nothing().returning(audit_t.c.event_id)
            recorded.extend((await conn.execute(stmt, values)).scalars())
        return recorded

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
