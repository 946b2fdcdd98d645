"""REST: the notification inbox and the per-user webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from doable.domain.notifications import URL_MAX
from doable.usecases.inbox import LIST_LIMIT_MAX, MarkReadView, NotificationListView, WebhookView, notification_view
from doable.usecases.service import TaskService
from doable.usecases.views import local
from doable.web.deps import InboxDep, TaskServiceDep
from doable.web.security import CurrentUser

router = APIRouter(prefix="/api", tags=["notifications"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token"},
    422: {"description": "Invalid input"},
}


class MarkReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | Literal["all"],
        Field(max_length=1000, description='Notification ids, or "all".'),
    ]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(max_length=URL_MAX, description="https URL that receives signed POSTs.")]


class DeliveryView(BaseModel):
    id: int
    notification_id: int
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    updated_at: str


class WebhookStatusView(WebhookView):
    deliveries: list[DeliveryView] = Field(default_factory=list)


async def _tz(service: TaskService, user_id: str) -> ZoneInfo:
    return (await service.get_profile(user_id)).tz


@router.get("/notifications", response_model=NotificationListView, responses=ERRORS)
async def list_notifications(
    inbox: InboxDep,
    service: TaskServiceDep,
    user: CurrentUser,
    unread_only: bool = False,
    limit: Annotated[int | None, Query(ge=1, le=LIST_LIMIT_MAX)] = None,
) -> NotificationListView:
    """The user's notifications, newest first, with the unread count."""
    items, unread = await inbox.recent(user.user_id, unread_only=unread_only, limit=limit)
    tz = await _tz(service, user.user_id)
    return NotificationListView(notifications=[notification_view(n, tz) for n in items], unread=unread)


@router.post("/notifications/read", response_model=MarkReadView, responses=ERRORS)
async def mark_read(inbox: InboxDep, user: CurrentUser, body: MarkReadIn) -> MarkReadView:
    marked, unread = await inbox.mark_read(user.user_id, body.ids)
    return MarkReadView(marked=marked, unread=unread)


@router.get("/webhook", response_model=WebhookStatusView, responses={**ERRORS, 404: {"description": "No webhook set"}})
async def get_webhook(inbox: InboxDep, service: TaskServiceDep, user: CurrentUser) -> WebhookStatusView:
    """The webhook URL and its latest deliveries (the secret is only shown when set)."""
    hook = await inbox.webhook(user.user_id)
    tz = await _tz(service, user.user_id)
    deliveries = [
        DeliveryView(
            id=d.id,
            notification_id=d.notification_id,
            state=d.state,
            attempts=d.attempts,
            last_status=d.last_status,
            last_error=d.last_error,
            updated_at=local(d.updated_at, tz) or "",
        )
        for d in await inbox.deliveries(user.user_id)
    ]
    return WebhookStatusView(url=hook.url, created_at=local(hook.created_at, tz) or "", deliveries=deliveries)


@router.put("/webhook", response_model=WebhookView, responses=ERRORS)
async def set_webhook(inbox: InboxDep, service: TaskServiceDep, user: CurrentUser, body: WebhookIn) -> WebhookView:
    """Set or replace the webhook. The signing secret is in this response only: store it now."""
    hook = await inbox.set_webhook(user.user_id, body.url)
    tz = await _tz(service, user.user_id)
    return WebhookView(url=hook.url, created_at=local(hook.created_at, tz) or "", secret=hook.secret)


@router.delete("/webhook", status_code=204, responses={**ERRORS, 404: {"description": "No webhook set"}})
async def delete_webhook(inbox: InboxDep, user: CurrentUser) -> Response:
    await inbox.delete_webhook(user.user_id)
    return Response(status_code=204)
