"""The notification inbox, webhooks and webhook deliveries in the Dapr state store.

    inbox:{uid}:meta               {"next_id", "unread": [ids]}       per-user serialization point
    inbox:{uid}:b:{n}              {"items": {"<id>": Notification}}   ids (n*64, (n+1)*64]
    inbox-src:{uid}:{source}       {"id"}                              one notification per source event
    webhook:{uid}                  the user's Webhook
    whd-seq                        {"next_id"}                         delivery ids (global: jobs carry only the id)
    whd:{id}                       a WebhookDelivery
    whd-note:{uid}:{notification}  {"id"}                              one delivery per notification
    whd-user:{uid}                 {"ids": [...]}                      the user's latest deliveries

Notification ids count per user (the live stream's ids and `since` are per user too). The
source key is created with first-write in the transaction that adds the notification, so a
redelivered Reminder Event, even racing the first, never makes a second one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.documents import StateTxn, optimistic, part
from doable.domain.errors import NotFound
from doable.domain.notifications import DeliveryState, NewNotification, Notification, Webhook, WebhookDelivery

BUCKET = 64
# Deliveries listed per user (`GET /api/webhook` shows the latest few).
USER_DELIVERIES_KEPT = 200


def meta_key(uid: str) -> str:
    return f"inbox:{part(uid)}:meta"


def bucket_key(uid: str, n: int) -> str:
    return f"inbox:{part(uid)}:b:{n}"


def source_key(uid: str, source_id: str) -> str:
    return f"inbox-src:{part(uid)}:{part(source_id)}"


def webhook_key(uid: str) -> str:
    return f"webhook:{part(uid)}"


DELIVERY_SEQ_KEY = "whd-seq"


def delivery_key(delivery_id: int) -> str:
    return f"whd:{delivery_id}"


def delivery_note_key(uid: str, notification_id: int) -> str:
    return f"whd-note:{part(uid)}:{notification_id}"


def user_deliveries_key(uid: str) -> str:
    return f"whd-user:{part(uid)}"


def _bucket(note_id: int) -> int:
    return (note_id - 1) // BUCKET


_META: dict[str, Any] = {"next_id": 0, "unread": []}


class DaprInbox:
    """InboxStore and WebhookStore over Dapr state."""

    def __init__(self, client: DaprClient, store: str) -> None:
        self._client = client
        self._store = store

    # ---- inbox ------------------------------------------------------------------------------

    async def add(self, new: NewNotification) -> tuple[Notification, bool]:
        async def work(txn: StateTxn) -> tuple[Notification, bool]:
            source = await txn.get(source_key(new.user_id, new.source_id))
            if source.exists:
                found = await self._read(txn, new.user_id, [int(source.value["id"])])
                if found:
                    return found[0], False
            meta = await txn.get(meta_key(new.user_id), _META)
            note_id = int(meta.value["next_id"]) + 1
            meta.value["next_id"] = note_id
            meta.value["unread"] = [*meta.value["unread"], note_id]
            meta.touch()
            note = Notification(
                id=note_id,
                user_id=new.user_id,
                kind=new.kind,
                task_id=new.task_id,
                title=new.title,
                data=new.data,
                created_at=new.created_at,
            )
            bucket = await txn.get(bucket_key(new.user_id, _bucket(note_id)), {"items": {}})
            bucket.value["items"][str(note_id)] = note.model_dump(mode="json")
            bucket.touch()
            source.set({"id": note_id})
            return note, True

        return await optimistic(self._client, self._store, work)

    async def add_many(self, news: list[NewNotification]) -> list[tuple[Notification, bool]]:
        """`add` for many in one transaction (its reads in a few bulk reads): one notification per
        (user, source id), in order; a source already in the inbox, or earlier in `news`, gives
        the notification it has."""
        if not news:
            return []

        async def work(txn: StateTxn) -> list[tuple[Notification, bool]]:
            users = list(dict.fromkeys(n.user_id for n in news))
            # The sources and the users' metas in one bulk read: both are known before any id is.
            await txn.preload(
                {source_key(n.user_id, n.source_id): None for n in news} | {meta_key(u): _META for u in users}
            )
            sources = await txn.get_many([source_key(n.user_id, n.source_id) for n in news])
            metas = dict(zip(users, await txn.get_many([meta_key(u) for u in users], _META), strict=True))
            results: list[tuple[Notification, bool] | None] = [None] * len(news)
            for i, (new, source) in enumerate(zip(news, sources, strict=True)):
                if source.exists and not source.dirty:
                    found = await self._read(txn, new.user_id, [int(source.value["id"])])
                    if found:
                        results[i] = (found[0], False)
            # New ids first, so the buckets they fall in are read together.
            planned: dict[str, tuple[int, Notification]] = {}
            for i, (new, source) in enumerate(zip(news, sources, strict=True)):
                if results[i] is not None or source.key in planned:
                    continue
                meta = metas[new.user_id]
                note_id = int(meta.value["next_id"]) + 1
                meta.value["next_id"] = note_id
                meta.value["unread"] = [*meta.value["unread"], note_id]
                meta.touch()
                note = Notification(
                    id=note_id, user_id=new.user_id, kind=new.kind, task_id=new.task_id, title=new.title,
                    data=new.data, created_at=new.created_at,
                )  # fmt: skip
                planned[source.key] = (i, note)
                source.set({"id": note_id})
            buckets = [bucket_key(n.user_id, _bucket(n.id)) for _, n in planned.values()]
            for doc, (_, note) in zip(await txn.get_many(buckets, {"items": {}}), planned.values(), strict=True):
                doc.value["items"][str(note.id)] = note.model_dump(mode="json")
                doc.touch()
            for i, source in enumerate(sources):
                if results[i] is None:
                    first, note = planned[source.key]
                    results[i] = (note, first == i)
            return [r for r in results if r is not None]

        return await optimistic(self._client, self._store, work)

    async def _read(self, txn: StateTxn, uid: str, ids: list[int]) -> list[Notification]:
        """The user's notifications `ids`, in that order (missing ones left out)."""
        keys = sorted({bucket_key(uid, _bucket(i)) for i in ids})
        items: dict[str, Any] = {}
        for doc in await txn.get_many(keys, {"items": {}}):
            items.update(doc.value["items"])
        return [Notification.model_validate(items[str(i)]) for i in ids if str(i) in items]

    async def recent(self, user_id: str, *, unread_only: bool, limit: int) -> list[Notification]:
        txn = StateTxn(self._client, self._store)
        meta = await txn.get(meta_key(user_id), _META)
        if unread_only:
            ids = sorted(meta.value["unread"], reverse=True)[:limit]
        else:
            top = int(meta.value["next_id"])
            ids = list(range(top, max(0, top - limit), -1))
        return await self._read(txn, user_id, ids)

    async def since(self, user_id: str, after_id: int, limit: int) -> list[Notification]:
        txn = StateTxn(self._client, self._store)
        meta = await txn.get(meta_key(user_id), _META)
        top = int(meta.value["next_id"])
        return await self._read(txn, user_id, list(range(max(0, after_id) + 1, min(top, after_id + limit) + 1)))

    async def unread_count(self, user_id: str) -> int:
        item = await self._client.get_state(self._store, meta_key(user_id))
        return len(item.value.get("unread", [])) if item is not None else 0

    async def mark_read(self, user_id: str, ids: list[int] | None, at: datetime) -> int:
        async def work(txn: StateTxn) -> int:
            meta = await txn.get(meta_key(user_id), _META)
            unread = [int(i) for i in meta.value["unread"]]
            marking = unread if ids is None else [i for i in unread if i in set(ids)]
            if not marking:
                return 0
            keys = sorted({bucket_key(user_id, _bucket(i)) for i in marking})
            docs = {d.key: d for d in await txn.get_many(keys, {"items": {}})}
            for note_id in marking:
                doc = docs[bucket_key(user_id, _bucket(note_id))]
                raw = doc.value["items"].get(str(note_id))
                if raw is not None:
                    raw["read_at"] = at.isoformat()
                    doc.touch()
            chosen = set(marking)
            meta.value["unread"] = [i for i in unread if i not in chosen]
            meta.touch()
            return len(marking)

        return await optimistic(self._client, self._store, work)

    # ---- webhooks ---------------------------------------------------------------------------

    async def get_webhook(self, user_id: str) -> Webhook | None:
        item = await self._client.get_state(self._store, webhook_key(user_id))
        return Webhook.model_validate(item.value) if item is not None else None

    async def webhooks_for(self, user_ids: list[str]) -> dict[str, Webhook]:
        """The webhooks of those of `user_ids` that have one, in one bulk read."""
        users = list(dict.fromkeys(user_ids))
        found = await self._client.get_bulk(self._store, [webhook_key(u) for u in users]) if users else {}
        return {u: Webhook.model_validate(found[webhook_key(u)].value) for u in users if webhook_key(u) in found}

    async def set_webhook(self, webhook: Webhook) -> None:
        async def work(txn: StateTxn) -> None:
            (await txn.get(webhook_key(webhook.user_id))).set(webhook.model_dump(mode="json"))

        await optimistic(self._client, self._store, work)

    async def delete_webhook(self, user_id: str) -> bool:
        async def work(txn: StateTxn) -> bool:
            doc = await txn.get(webhook_key(user_id))
            doc.delete()
            return doc.exists

        return await optimistic(self._client, self._store, work)

    async def add_delivery(
        self, user_id: str, notification_id: int, url: str, body: str, at: datetime
    ) -> WebhookDelivery:
        async def work(txn: StateTxn) -> WebhookDelivery:
            link = await txn.get(delivery_note_key(user_id, notification_id))
            if link.exists:
                found = await txn.get(delivery_key(int(link.value["id"])))
                if found.exists:
                    return WebhookDelivery.model_validate(found.value)
            seq = await txn.get(DELIVERY_SEQ_KEY, {"next_id": 0})
            delivery_id = int(seq.value["next_id"]) + 1
            seq.value["next_id"] = delivery_id
            seq.touch()
            delivery = WebhookDelivery(
                id=delivery_id,
                user_id=user_id,
                notification_id=notification_id,
                url=url,
                body=body,
                state="pending",
                attempts=0,
                created_at=at,
                updated_at=at,
            )
            (await txn.get(delivery_key(delivery_id))).set(delivery.model_dump(mode="json"))
            link.set({"id": delivery_id})
            mine = await txn.get(user_deliveries_key(user_id), {"ids": []})
            mine.value["ids"] = [*mine.value["ids"], delivery_id][-USER_DELIVERIES_KEPT:]
            mine.touch()
            return delivery

        return await optimistic(self._client, self._store, work)

    async def get_delivery(self, delivery_id: int) -> WebhookDelivery | None:
        item = await self._client.get_state(self._store, delivery_key(delivery_id))
        return WebhookDelivery.model_validate(item.value) if item is not None else None

    async def record_attempt(
        self, delivery_id: int, *, state: DeliveryState, status: int | None, error: str | None, at: datetime
    ) -> WebhookDelivery:
        async def work(txn: StateTxn) -> WebhookDelivery:
            doc = await txn.get(delivery_key(delivery_id))
            if not doc.exists:
                raise NotFound(f"webhook delivery {delivery_id} not found")
            current = WebhookDelivery.model_validate(doc.value)
            updated = current.model_copy(
                update={
                    "state": state,
                    "attempts": current.attempts + 1,
                    "last_status": status,
                    "last_error": error[:1000] if error else None,
                    "updated_at": at,
                }
            )
            doc.set(updated.model_dump(mode="json"))
            return updated

        return await optimistic(self._client, self._store, work)

    async def deliveries(self, user_id: str, limit: int) -> list[WebhookDelivery]:
        index = await self._client.get_state(self._store, user_deliveries_key(user_id))
        if index is None:
            return []
        ids = list(reversed(index.value.get("ids", [])))[:limit]
        found = await self._client.get_bulk(self._store, [delivery_key(i) for i in ids])
        return [WebhookDelivery.model_validate(found[delivery_key(i)].value) for i in ids if delivery_key(i) in found]
