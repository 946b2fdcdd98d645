"""The notification inbox, webhooks and webhook deliveries in SQL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.transactions import from_micros, from_micros_or_none, transaction, upsert
from doable.adapters.sql.worker_schema import NotificationRow, WebhookDeliveryRow, WebhookRow
from doable.domain.errors import NotFound
from doable.domain.notifications import DeliveryState, NewNotification, Notification, Webhook, WebhookDelivery
from doable.domain.query import micros

notes_t = table_of(NotificationRow)
hooks_t = table_of(WebhookRow)
deliveries_t = table_of(WebhookDeliveryRow)


def _notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        task_id=row.task_id,
        title=row.title,
        data=json.loads(row.payload),
        created_at=from_micros(row.created_us),
        read_at=from_micros_or_none(row.read_us),
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        user_id=row.user_id,
        notification_id=row.notification_id,
        url=row.url,
        body=row.body,
        state=row.state,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=from_micros(row.created_us),
        updated_at=from_micros(row.updated_us),
    )


class SqlInbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, new: NewNotification) -> tuple[Notification, bool]:
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, notes_t).values(
                user_id=new.user_id,
                source_id=new.source_id,
                kind=new.kind,
                task_id=new.task_id,
                title=new.title,
                payload=json.dumps(new.data),
                created_us=micros(new.created_at),
            )
            inserted = (await conn.execute(stmt.on_conflict_do_nothing().returning(notes_t.c.id))).first()
            row = (
                await conn.execute(
                    sa.select(notes_t).where(notes_t.c.user_id == new.user_id, notes_t.c.source_id == new.source_id)
                )
            ).one()
        return _notification(row), inserted is not None

    async def add_many(self, news: list[NewNotification]) -> list[tuple[Notification, bool]]:
        """`add` for many in one transaction: one notification per (user, source id), in order."""
        if not news:
            return []
        rows = [
            {
                "user_id": n.user_id,
                "source_id": n.source_id,
                "kind": n.kind,
                "task_id": n.task_id,
                "title": n.title,
                "payload": json.dumps(n.data),
                "created_us": micros(n.created_at),
            }
            for n in news
        ]
        stored: dict[tuple[str, str], Notification] = {}
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, notes_t).on_conflict_do_nothing().returning(notes_t.c.id)
            inserted = set((await conn.execute(stmt, rows)).scalars())  # executemany: compiled once
            for user_id in dict.fromkeys(n.user_id for n in news):
                sources = sorted({n.source_id for n in news if n.user_id == user_id})
                stmt2 = sa.select(notes_t).where(notes_t.c.user_id == user_id, notes_t.c.source_id.in_(sources))
                for row in (await conn.execute(stmt2)).all():
                    stored[(row.user_id, row.source_id)] = _notification(row)
        out: list[tuple[Notification, bool]] = []
        seen: set[int] = set()
        for n in news:
            note = stored[(n.user_id, n.source_id)]
            out.append((note, note.id in inserted and note.id not in seen))
            seen.add(note.id)
        return out

    async def webhooks_for(self, user_ids: list[str]) -> dict[str, Webhook]:
        if not user_ids:
            return {}
        stmt = sa.select(hooks_t).where(hooks_t.c.user_id.in_(sorted(set(user_ids))))
        async with transaction(self._engine, write=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return {
            r.user_id: Webhook(user_id=r.user_id, url=r.url, secret=r.secret, created_at=from_micros(r.created_us))
            for r in rows
        }

    async def recent(self, user_id: str, *, unread_only: bool, limit: int) -> list[Notification]:
        stmt = sa.select(notes_t).where(notes_t.c.user_id == user_id)
        if unread_only:
            stmt = stmt.where(notes_t.c.read_us.is_(None))
        stmt = stmt.order_by(notes_t.c.id.desc()).limit(limit)
        async with transaction(self._engine, write=False) as conn:
            return [_notification(r) for r in (await conn.execute(stmt)).all()]

    async def since(self, user_id: str, after_id: int, limit: int) -> list[Notification]:
        stmt = (
            sa.select(notes_t)
            .where(notes_t.c.user_id == user_id, notes_t.c.id > after_id)
            .order_by(notes_t.c.id)
            .limit(limit)
        )
        async with transaction(self._engine, write=False) as conn:
            return [_notification(r) for r in (await conn.execute(stmt)).all()]

    async def unread_count(self, user_id: str) -> int:
        stmt = sa.select(sa.func.count()).where(notes_t.c.user_id == user_id, notes_t.c.read_us.is_(None))
        async with transaction(self._engine, write=False) as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def mark_read(self, user_id: str, ids: list[int] | None, at: datetime) -> int:
        stmt = sa.update(notes_t).where(notes_t.c.user_id == user_id, notes_t.c.read_us.is_(None))
        if ids is not None:
            if not ids:
                return 0
            stmt = stmt.where(notes_t.c.id.in_(ids))
        async with transaction(self._engine) as conn:
            return int((await conn.execute(stmt.values(read_us=micros(at)))).rowcount or 0)

    # ---- webhooks -----------------------------------------------------------------------

    async def get_webhook(self, user_id: str) -> Webhook | None:
        async with transaction(self._engine, write=False) as conn:
            row = (await conn.execute(sa.select(hooks_t).where(hooks_t.c.user_id == user_id))).first()
        if row is None:
            return None
        return Webhook(user_id=row.user_id, url=row.url, secret=row.secret, created_at=from_micros(row.created_us))

    async def set_webhook(self, webhook: Webhook) -> None:
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, hooks_t).values(
                user_id=webhook.user_id, url=webhook.url, secret=webhook.secret, created_us=micros(webhook.created_at)
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[hooks_t.c.user_id],
                    set_={
                        "url": stmt.excluded.url,
                        "secret": stmt.excluded.secret,
                        "created_us": stmt.excluded.created_us,
                    },
                )
            )

    async def delete_webhook(self, user_id: str) -> bool:
        async with transaction(self._engine) as conn:
            return bool((await conn.execute(sa.delete(hooks_t).where(hooks_t.c.user_id == user_id))).rowcount)

    async def add_delivery(
        self, user_id: str, notification_id: int, url: str, body: str, at: datetime
    ) -> WebhookDelivery:
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, deliveries_t).values(
                user_id=user_id,
                notification_id=notification_id,
                url=url,
                body=body,
                state="pending",
                attempts=0,
                created_us=micros(at),
                updated_us=micros(at),
            )
            await conn.execute(stmt.on_conflict_do_nothing())
            row = (
                await conn.execute(
                    sa.select(deliveries_t).where(
                        deliveries_t.c.user_id == user_id, deliveries_t.c.notification_id == notification_id
                    )
                )
            ).one()
        return _delivery(row)

    async def get_delivery(self, delivery_id: int) -> WebhookDelivery | None:
        async with transaction(self._engine, write=False) as conn:
            row = (await conn.execute(sa.select(deliveries_t).where(deliveries_t.c.id == delivery_id))).first()
        return _delivery(row) if row is not None else None

    async def record_attempt(
        self, delivery_id: int, *, state: DeliveryState, status: int | None, error: str | None, at: datetime
    ) -> WebhookDelivery:
        async with transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    sa.update(deliveries_t)
                    .where(deliveries_t.c.id == delivery_id)
                    .values(
                        state=state,
                        attempts=deliveries_t.c.attempts + 1,
                        last_status=status,
                        last_error=error[:1000] if error else None,
                        updated_us=micros(at),
                    )
                    .returning(*deliveries_t.c)
                )
            ).first()
        if row is None:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        return _delivery(row)

    async def deliveries(self, user_id: str, limit: int) -> list[WebhookDelivery]:
        stmt = (
            sa.select(deliveries_t)
            .where(deliveries_t.c.user_id == user_id)
            .order_by(deliveries_t.c.id.desc())
            .limit(limit)
        )
        async with transaction(self._engine, write=False) as conn:
            return [_delivery(r) for r in (await conn.execute(stmt)).all()]
