"""Task tools over MCP. Each tool is a thin adapter: resolve the user, call the service, shape the result.

Tool and parameter descriptions are what the model reads; every token counts.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import structlog
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from doable.domain.errors import DoableError
from doable.domain.query import SortField, Status
from doable.domain.task import Priority
from doable.history import History, HistoryView, history_view
from doable.inbox import Inbox, MarkReadView, NotificationListView, notification_view
from doable.inputs import DueText, ListRequest, NewTask, RecurrenceArg, ReminderIn, TaskChanges
from doable.logs import current_trace_id
from doable.metrics import TOOL_LATENCY
from doable.service import TaskService
from doable.views import ProfileView, TaskListView, TaskResult, list_view, profile_view, task_result
from mcp_server.identity import McpTokenVerifier, UserResolver, resolve_user

log = structlog.get_logger("doable.mcp")

INSTRUCTIONS = (
    "Doable manages the signed-in user's tasks. Task ids are per user; never guess one: "
    "list or search first. Times without an offset are in the user's timezone (see get_profile)."
)

P = ParamSpec("P")
R = TypeVar("R")

# The raw `arguments` of the current tools/call, so update_task can tell an explicit null (clear)
# from an omitted field (keep). Set by _RawArguments, an MCP server middleware.
_raw_arguments: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("mcp_raw_arguments", default=None)


class _RawArguments:
    """Keeps the raw arguments for the tool, and refuses arguments the tool does not have
    (the SDK would silently drop them, and a model should learn it misspelled a field)."""

    def __init__(self) -> None:
        self.server: MCPServer[Any] | None = None
        self._params: dict[str, set[str]] | None = None

    async def _known(self, tool: str) -> set[str] | None:
        if self._params is None and self.server is not None:
            self._params = {t.name: set(t.input_schema.get("properties", {})) for t in await self.server.list_tools()}
        return (self._params or {}).get(tool)

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if getattr(ctx, "method", None) != "tools/call" or not isinstance(getattr(ctx, "params", None), dict):
            return await call_next(ctx)
        args = ctx.params.get("arguments")
        args = dict(args) if isinstance(args, dict) else {}
        known = await self._known(str(ctx.params.get("name")))
        if known is not None and (unknown := sorted(set(args) - known)):
            return CallToolResult(
                content=[
                    TextContent(
                        type="text",
                        text=f"invalid_argument: unknown argument(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(sorted(known))}",
                    )
                ],
                is_error=True,
            )
        token = _raw_arguments.set(args)
        try:
            return await call_next(ctx)
        finally:
            _raw_arguments.reset(token)


def _tool_errors(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Domain errors become tool errors naming the field and rule; anything else is logged, not leaked."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            outcome = "ok"
            try:
                return await fn(*args, **kwargs)
            except DoableError as exc:
                outcome = exc.code
                raise ToolError(str(exc)) from None
            except ToolError:
                outcome = "error"
                raise
            except Exception:
                outcome = "internal"
                log.exception("mcp.tool_failed", tool=name)
                raise ToolError(f"internal: unexpected error (trace {current_trace_id() or 'n/a'})") from None
            finally:
                TOOL_LATENCY.labels(tool=name, outcome=outcome).observe(time.perf_counter() - started)

        return wrapper

    return decorate


UserIdArg = Annotated[str | None, Field(description="Optional; must equal the signed-in user.")]
IdemArg = Annotated[str | None, Field(max_length=128, description="Retry-safe key: a repeat returns the first result.")]
TaskIdArg = Annotated[int, Field(description="The task's id (per user).")]
TitleArg = Annotated[str, Field(max_length=1000, description="1-200 characters.")]
DescriptionArg = Annotated[str | None, Field(max_length=20000, description="Up to 4000 characters.")]
TagsArg = Annotated[list[str] | None, Field(max_length=100, description="Labels, e.g. ['work'].")]
RemindersArg = Annotated[
    list[ReminderIn] | None, Field(max_length=100, description="[{minutes_before: 30}] or [{at: ISO datetime}].")
]
RecurrenceParam = Annotated[RecurrenceArg | None, Field(description="Repeat rule; needs `due`.")]

_WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
_READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)


def build_mcp(
    service: TaskService,
    user: UserResolver,
    *,
    verifier: McpTokenVerifier | None = None,
    auth: AuthSettings | None = None,
    inbox: Inbox | None = None,
    history: History | None = None,
) -> MCPServer[Any]:
    """An MCP server whose tools act for the user that `user()` resolves (token subject or a fixed user).

    With `inbox` and `history` it also serves the notification and task-history tools."""
    raw_arguments = _RawArguments()
    mcp: MCPServer[Any] = MCPServer(
        "doable",
        instructions=INSTRUCTIONS,
        token_verifier=verifier,
        auth=auth,
        middleware=[raw_arguments],
    )
    raw_arguments.server = mcp

    async def tz_of(user_id: str) -> Any:
        return (await service.get_profile(user_id)).tz

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("add_task")
    async def add_task(
        title: TitleArg,
        description: DescriptionArg = None,
        priority: Priority | None = None,
        tags: TagsArg = None,
        due: DueText | None = None,
        reminders: RemindersArg = None,
        recurrence: RecurrenceParam = None,
        idempotency_key: IdemArg = None,
        user_id: UserIdArg = None,
    ) -> TaskResult:
        """Create a task."""
        uid = resolve_user(user, user_id)
        new = NewTask(
            title=title,
            description=description,
            priority=priority,
            tags=tags,
            due=due,
            reminders=reminders,
            recurrence=recurrence,
        )
        task = await service.add(uid, new, idempotency_key=idempotency_key)
        return task_result(task, "created", await tz_of(uid))

    @mcp.tool(annotations=_READ)
    @_tool_errors("list_tasks")
    async def list_tasks(
        status: Status = Status.ALL,
        priority: Annotated[list[Priority] | None, Field(max_length=4)] = None,
        tags: Annotated[list[str] | None, Field(max_length=20)] = None,
        tags_mode: Literal["any", "all"] = "any",
        due: Annotated[
            Literal["overdue", "today", "tomorrow", "this_week", "next_7_days", "none", "any"] | None,
            Field(description="Window in the user's timezone."),
        ] = None,
        due_after: DueText | None = None,
        due_before: DueText | None = None,
        search: Annotated[str | None, Field(max_length=200, description="Keyword in title/description.")] = None,
        filter: Annotated[
            str | None,
            Field(max_length=500, description="Text filter: 'overdue & (#work | #home) & p:high', 'due before: friday'."),
        ] = None,
        sort: SortField = SortField.CREATED,
        order: Annotated[Literal["asc", "desc"] | None, Field(description="Default: due/title asc, else desc.")] = None,
        limit: Annotated[int | None, Field(ge=1, le=200, description="Default 50.")] = None,
        cursor: Annotated[str | None, Field(max_length=512, description="next_cursor from the last page.")] = None,
        user_id: UserIdArg = None,
    ) -> TaskListView:
        """List, search, filter and sort tasks. Includes the user's now/today."""
        uid = resolve_user(user, user_id)
        request = ListRequest(
            status=status,
            priority=priority,
            tags=tags,
            tags_mode=tags_mode,
            due=due,
            due_after=due_after,
            due_before=due_before,
            search=search,
            filter=filter,
            sort=sort,
            order=order,
            limit=limit,
            cursor=cursor,
        )
        page, cal = await service.list(uid, request)
        return list_view(page, cal)

    @mcp.tool(annotations=_READ)
    @_tool_errors("get_task")
    async def get_task(task_id: TaskIdArg, user_id: UserIdArg = None) -> TaskResult:
        """One task with all its details."""
        uid = resolve_user(user, user_id)
        return task_result(await service.get(uid, task_id), "found", await tz_of(uid))

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("update_task")
    async def update_task(
        task_id: TaskIdArg,
        title: Annotated[str | None, Field(max_length=1000)] = None,
        description: DescriptionArg = None,
        priority: Priority | None = None,
        tags: TagsArg = None,
        due: DueText | None = None,
        reminders: RemindersArg = None,
        recurrence: RecurrenceParam = None,
        idempotency_key: IdemArg = None,
        user_id: UserIdArg = None,
    ) -> TaskResult:
        """Change a task. Omitted fields stay; null clears description/tags/due/reminders/recurrence."""
        uid = resolve_user(user, user_id)
        values = {
            "title": title,
            "description": description,
            "priority": priority,
            "tags": tags,
            "due": due,
            "reminders": reminders,
            "recurrence": recurrence,
        }
        raw = _raw_arguments.get()
        given = (
            {k: v for k, v in values.items() if k in raw} if raw else {k: v for k, v in values.items() if v is not None}
        )
        task = await service.update(uid, task_id, TaskChanges(**given), idempotency_key=idempotency_key)
        return task_result(task, "updated", await tz_of(uid))

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("complete_task")
    async def complete_task(task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None) -> TaskResult:
        """Mark a task done (a repeating task's next occurrence follows)."""
        uid = resolve_user(user, user_id)
        task = await service.complete(uid, task_id, idempotency_key=idempotency_key)
        return task_result(task, "completed", await tz_of(uid))

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("reopen_task")
    async def reopen_task(task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None) -> TaskResult:
        """Mark a completed task pending again."""
        uid = resolve_user(user, user_id)
        task = await service.reopen(uid, task_id, idempotency_key=idempotency_key)
        return task_result(task, "reopened", await tz_of(uid))

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False))
    @_tool_errors("delete_task")
    async def delete_task(task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None) -> TaskResult:
        """Delete a task."""
        uid = resolve_user(user, user_id)
        task = await service.delete(uid, task_id, idempotency_key=idempotency_key)
        return task_result(task, "deleted", await tz_of(uid))

    @mcp.tool(annotations=_READ)
    @_tool_errors("get_profile")
    async def get_profile(user_id: UserIdArg = None) -> ProfileView:
        """The user's timezone, current local time and date."""
        uid = resolve_user(user, user_id)
        return profile_view(uid, service.calendar(await service.get_profile(uid)))

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("set_timezone")
    async def set_timezone(
        timezone: Annotated[str, Field(max_length=64, description="IANA name, e.g. 'Europe/Berlin'.")],
        user_id: UserIdArg = None,
    ) -> ProfileView:
        """Set the user's timezone (used for due dates, 'today', recurrences)."""
        uid = resolve_user(user, user_id)
        return profile_view(uid, service.calendar(await service.set_timezone(uid, timezone)))

    if inbox is not None:
        notes = inbox

        @mcp.tool(annotations=_READ)
        @_tool_errors("list_notifications")
        async def list_notifications(
            unread_only: bool = False,
            limit: Annotated[int | None, Field(ge=1, le=200, description="Default 20.")] = None,
            user_id: UserIdArg = None,
        ) -> NotificationListView:
            """The user's reminders (notifications), newest first, and the unread count."""
            uid = resolve_user(user, user_id)
            items, unread = await notes.recent(uid, unread_only=unread_only, limit=limit)
            tz = await tz_of(uid)
            return NotificationListView(notifications=[notification_view(n, tz) for n in items], unread=unread)

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=True, openWorldHint=False))
        @_tool_errors("mark_read")
        async def mark_read(
            ids: Annotated[list[int] | Literal["all"], Field(description='Notification ids, or "all".')],
            user_id: UserIdArg = None,
        ) -> MarkReadView:
            """Mark notifications read."""
            uid = resolve_user(user, user_id)
            marked, unread = await notes.mark_read(uid, ids)
            return MarkReadView(marked=marked, unread=unread)

    if history is not None:
        log_of = history

        @mcp.tool(annotations=_READ)
        @_tool_errors("task_history")
        async def task_history(
            task_id: Annotated[int | None, Field(description="One task's history; omit for recent activity.")] = None,
            limit: Annotated[int | None, Field(ge=1, le=200, description="Default 20.")] = None,
            user_id: UserIdArg = None,
        ) -> HistoryView:
            """What happened to a task (or to all tasks lately), newest first."""
            uid = resolve_user(user, user_id)
            entries = await log_of.list(uid, task_id=task_id, limit=limit)
            return history_view(entries, await tz_of(uid), limit)

    return mcp
