"""Inbox ports: the notification inbox and the per-user webhooks with their deliveries.

Adapters: `doable.adapters.sql.inbox` (SQL), `doable.adapters.dapr.inbox` (Dapr state). The records
and the use cases that read them are in `doable.usecases.inbox`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Only for annotations: doable.usecases.inbox (the use cases) imports these ports at run time.
    from doable.domain.notifications import DeliveryState, NewNotification, Notification, Webhook, WebhookDelivery


class InboxStore(Protocol):
    async def add(self, new: NewNotification) -> tuple[Notification, bool]:
        """Store `new` unless its source was stored before; (the notification, whether it is new)."""
        ...

    async def add_many(self, news: list[NewNotification]) -> list[tuple[Notification, bool]]:
        """`add` for each of `news`, in one transaction."""
        ...

    async def recent(self, user_id: str, *, unread_only: bool, limit: int) -> list[Notification]:
        """Newest first."""
        ...

    async def since(self, user_id: str, after_id: int, limit: int) -> list[Notification]:
        """Notifications with an id above `after_id`, oldest first (stream resumption)."""
        ...

    async def unread_count(self, user_id: str) -> int: ...

    async def mark_read(self, user_id: str, ids: list[int] | None, at: datetime) -> int:
        """Mark the user's notifications `ids` (all when None) read; how many changed."""
        ...


class WebhookStore(Protocol):
    async def get_webhook(self, user_id: str) -> Webhook | None: ...

    async def webhooks_for(self, user_ids: list[str]) -> dict[str, Webhook]:
        """The webhooks of those of `user_ids` that have one (one read)."""
        ...

    async def set_webhook(self, webhook: Webhook) -> None: ...

    async def delete_webhook(self, user_id: str) -> bool: ...

    async def add_delivery(
        self, user_id: str, notification_id: int, url: str, body: str, at: datetime
    ) -> WebhookDelivery:
        """A pending delivery of one notification, or the one already recorded for it."""
        ...

    async def get_delivery(self, delivery_id: int) -> WebhookDelivery | None: ...

    async def record_attempt(
        self, delivery_id: int, *, state: DeliveryState, status: int | None, error: str | None, at: datetime
    ) -> WebhookDelivery:
        """Count one attempt and its result."""
        ...

    async def deliveries(self, user_id: str, limit: int) -> list[WebhookDelivery]:
        """The user's latest deliveries, newest first."""
        ...
