"""The user's own tools: profile and timezone, the reminder inbox, and the history of changes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from doable.usecases.history import HistoryView, history_view, occurrence_view
from doable.usecases.inbox import MarkReadView, NotificationListView, notification_view
from doable.usecases.views import ProfileView, profile_view
from mcp_server.tooling import UserIdArg, tool_deps, tool_errors


@tool_errors
async def get_profile(ctx: Context[Any, Any], user_id: UserIdArg = None) -> ProfileView:
    """The user's timezone, current local time and date."""
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    return profile_view(uid, (await deps.tasks.get_profile(uid)).calendar)


@tool_errors
async def set_timezone(
    ctx: Context[Any, Any],
    timezone: Annotated[str, Field(max_length=64, description="IANA name, e.g. 'Europe/Berlin'.")],
    user_id: UserIdArg = None,
) -> ProfileView:
    """Set the user's timezone (used for due dates, 'today', recurrences)."""
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    done = await deps.tasks.set_timezone(uid, timezone)
    return profile_view(uid, done.calendar).model_copy(update={"undo": done.undo})


@tool_errors
async def list_notifications(
    ctx: Context[Any, Any],
    unread_only: bool = False,
    limit: Annotated[int | None, Field(ge=1, le=200, description="Default 20.")] = None,
    user_id: UserIdArg = None,
) -> NotificationListView:
    """The user's reminders (notifications), newest first, and the unread count."""
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    items, unread = await deps.inbox.recent(uid, unread_only=unread_only, limit=limit)
    # The inbox is a store of its own: the timezone is one read of the profile.
    tz = (await deps.tasks.get_profile(uid)).calendar.tz
    return NotificationListView(notifications=[notification_view(n, tz) for n in items], unread=unread)


@tool_errors
async def mark_read(
    ctx: Context[Any, Any],
    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | Literal["all"],
        Field(max_length=1000, description='Notification ids, or "all".'),
    ],
    user_id: UserIdArg = None,
) -> MarkReadView:
    """Mark notifications read."""
    deps = tool_deps(ctx)
    marked, unread = await deps.inbox.mark_read(deps.caller(user_id), ids)
    return MarkReadView(marked=marked, unread=unread)


@tool_errors
async def task_history(
    ctx: Context[Any, Any],
    task_id: Annotated[int | None, Field(description="One task's history; omit for recent activity.")] = None,
    limit: Annotated[int | None, Field(ge=1, le=200, description="Default 20.")] = None,
    user_id: UserIdArg = None,
) -> HistoryView:
    """What happened to a task (or to all tasks lately), newest first; for a repeating task
    also each occurrence: completed, skipped, missed or rescheduled."""
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    entries = await deps.history.list(uid, task_id=task_id, limit=limit)
    # The history is a store of its own: the timezone is one read of the profile.
    tz = (await deps.tasks.get_profile(uid)).calendar.tz
    view = history_view(entries, tz, limit)
    if task_id is not None and (records := await deps.series.occurrences(uid, task_id, limit or 20)) is not None:
        view.occurrences = [occurrence_view(r, tz) for r in records]
    return view
