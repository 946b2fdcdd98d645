"""The notification inbox and per-user webhooks: models and the read/settings use cases that REST
and MCP call (their storage ports are in `doable.ports.inbox`). The notifications worker
(`workers.notifications`) writes them.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from doable.domain.clock import Clock
from doable.domain.errors import InvalidArgument, NotFound
from doable.domain.query import check_int
from doable.ports.inbox import InboxStore, WebhookStore
from doable.views import local

LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 200
URL_MAX = 2000


class Notification(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    user_id: str
    kind: str
    task_id: int | None
    title: str
    # The event fields the notification was made from (a Reminder Event: due_at, remind_at, ...).
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None = None

    def to_data(self) -> dict[str, Any]:
        """The JSON shape pushed to live streams and webhooks."""
        return {
            "id": self.id,
            "type": self.kind,
            "task_id": self.task_id,
            "title": self.title,
            "due_at": self.data.get("due_at"),
            "remind_at": self.data.get("remind_at"),
            "created_at": self.created_at.isoformat(),
            "user_id": self.user_id,
        }


@dataclass(frozen=True)
class NewNotification:
    user_id: str
    source_id: str  # the causing event's id; the same source never makes two notifications
    kind: str
    task_id: int | None
    title: str
    data: dict[str, Any]
    created_at: datetime


class Webhook(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    url: str
    secret: str
    created_at: datetime


DeliveryState = Literal["pending", "delivered", "failed"]


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    user_id: str
    notification_id: int
    url: str
    body: str  # the exact bytes signed and sent, kept so every retry sends the same signature base
    state: DeliveryState
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """An absolute http(s) URL without credentials; loopback, private and link-local hosts only
    when `allow_private` (they would let a user make the server call its own network)."""
    text = url.strip()
    if not text or len(text) > URL_MAX:
        raise InvalidArgument("url", f"must be an http(s) URL of at most {URL_MAX} characters")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("url", "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidArgument("url", "must not contain credentials; the body is signed with the webhook secret")
    if not allow_private and not is_public_host(parts.hostname):
        raise InvalidArgument("url", "must point to a public host (private and loopback addresses are refused)")
    return text


def is_public_host(host: str) -> bool:
    """False for localhost names and non-global IP literals; names are checked again when resolved."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        return ipaddress.ip_address(name).is_global
    except ValueError:
        pass
    try:
        # IPv4 in the shorthands resolvers accept: 0x7f000001, 2130706433, 127.1, 0177.0.0.1.
        packed = socket.inet_aton(name)
    except OSError:
        return True
    return ipaddress.IPv4Address(packed).is_global


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
