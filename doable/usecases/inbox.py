"""The notification inbox and per-user webhooks: models and the read/settings use cases that REST
and MCP call (their storage ports are in `doable.ports.inbox`). The notifications worker
(`workers.notifications`) writes them.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from doable.domain.clock import Clock
from doable.domain.errors import InvalidArgument, NotFound
from doable.domain.notifications import Notification, Webhook, WebhookDelivery, check_webhook_url
from doable.domain.query import check_int
from doable.ports.inbox import InboxStore, WebhookStore
from doable.usecases.views import local

LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 200

class NotificationView(BaseModel):
    id: int
    type: str
    task_id: int | None
    title: str
    due: str | None
    remind_at: str | None
    created_at: str
    read: bool


class NotificationListView(BaseModel):
    notifications: list[NotificationView]
    unread: int


class MarkReadView(BaseModel):
    marked: int
    unread: int


class WebhookView(BaseModel):
    url: str
    created_at: str
    # Returned once, when the webhook is set; never again.
    secret: str | None = None
    signature_header: str = "X-Doable-Signature"


def notification_view(n: Notification, tz: ZoneInfo) -> NotificationView:
    return NotificationView(
        id=n.id,
        type=n.kind,
        task_id=n.task_id,
        title=n.title,
        due=_local_text(n.data.get("due_at"), tz),
        remind_at=_local_text(n.data.get("remind_at"), tz),
        created_at=local(n.created_at, tz) or "",
        read=n.read_at is not None,
    )


def _local_text(value: Any, tz: ZoneInfo) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return local(datetime.fromisoformat(value), tz)
    except ValueError:
        return None


class Inbox:
    """What users do with their notifications and webhook, over the storage ports."""

    def __init__(
        self, store: InboxStore, webhooks: WebhookStore, clock: Clock, *, allow_private_webhooks: bool
    ) -> None:
        self._store = store
        self._webhooks = webhooks
        self._clock = clock
        self._allow_private = allow_private_webhooks

    async def recent(
        self, user_id: str, *, unread_only: bool = False, limit: int | None = None
    ) -> tuple[list[Notification], int]:
        """The newest notifications (optionally only unread ones) and the unread count."""
        size = LIST_LIMIT_DEFAULT if limit is None else limit
        if not 1 <= size <= LIST_LIMIT_MAX:
            raise InvalidArgument("limit", f"must be between 1 and {LIST_LIMIT_MAX}")
        items = await self._store.recent(user_id, unread_only=unread_only, limit=size)
        return items, await self._store.unread_count(user_id)

    async def since(self, user_id: str, after_id: int, limit: int = 100) -> list[Notification]:
        check_int(after_id, "Last-Event-ID", 0)
        return await self._store.since(user_id, after_id, limit)

    async def mark_read(self, user_id: str, ids: list[int] | Literal["all"]) -> tuple[int, int]:
        """(how many became read, how many stay unread). Ids of other users' notifications change nothing."""
        if ids != "all" and (not isinstance(ids, list) or len(ids) > LIST_LIMIT_MAX):
            raise InvalidArgument("ids", f'must be a list of at most {LIST_LIMIT_MAX} ids, or "all"')
        if isinstance(ids, list):
            for i, note_id in enumerate(ids):
                check_int(note_id, f"ids[{i}]")
        marked = await self._store.mark_read(user_id, None if ids == "all" else ids, self._clock.now())
        return marked, await self._store.unread_count(user_id)

    async def set_webhook(self, user_id: str, url: str) -> Webhook:
        """Set (or replace) the user's webhook with a fresh signing secret."""
        checked = check_webhook_url(url, allow_private=self._allow_private)
        webhook = Webhook(
            user_id=user_id, url=checked, secret="whsec_" + secrets.token_urlsafe(32), created_at=self._clock.now()
        )
        await self._webhooks.set_webhook(webhook)
        return webhook

    async def webhook(self, user_id: str) -> Webhook:
        found = await self._webhooks.get_webhook(user_id)
        if found is None:
            raise NotFound("no webhook is set")
        return found

    async def delete_webhook(self, user_id: str) -> None:
        if not await self._webhooks.delete_webhook(user_id):
            raise NotFound("no webhook is set")

    async def deliveries(self, user_id: str, limit: int = 20) -> list[WebhookDelivery]:
        return await self._webhooks.deliveries(user_id, limit)
