"""The notification inbox's records and rules: a notification (what a user reads), a user's webhook
and its deliveries, and which webhook URLs are acceptable."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from doable.domain.errors import InvalidArgument

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
