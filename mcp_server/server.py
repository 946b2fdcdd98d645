"""Task tools over MCP. Each tool is a thin adapter: resolve the user, call the service, shape the result.

Tool and parameter descriptions are what the model reads; every token counts.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import structlog
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.resolve import Resolve
from mcp.server.request_state import RequestStateSecurity
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as McpTool
from pydantic import BaseModel, Field, ValidationError

from doable import __version__
from doable.actor import acting_as
from doable.bulk import Bulk, BulkOutcome, BulkView, bulk_view
from doable.domain.errors import DoableError
from doable.domain.query import SortField, Status
from doable.domain.task import Priority
from doable.history import History, HistoryView, history_view, occurrence_view
from doable.inbox import Inbox, MarkReadView, NotificationListView, notification_view
from doable.inputs import DueText, ListRequest, NewTask, RecurrenceArg, ReminderIn, TaskChanges
from doable.logs import current_trace_id
from doable.metrics import TOOL_LATENCY
from doable.offload import off_loop
from doable.runtime import Runtime
from doable.series_service import SeriesActions
from doable.service import TaskService
from doable.settings import Settings
from doable.undo import Receipt, Undo, UndoView, undo_view
from doable.views import ProfileView, TaskListView, TaskResult, list_view, profile_view, task_result
from mcp_server.elicitation import BulkAsker, ConfirmChange, ask_the_person, preview_for_the_person
from mcp_server.identity import UserResolver, resolve_user
from mcp_server.prompts import add_prompts
from mcp_server.resources import add_resources
from mcp_server.schemas import compact_schema
from mcp_server.validation import explain

log = structlog.get_logger("doable.mcp")

MCP_NAME = "doable"

INSTRUCTIONS = (
    "Doable manages the signed-in user's tasks. Task ids are per user; never guess one: "
    "list or search first. Times without an offset are in the user's timezone (see get_profile). "
    "Every change returns an `undo` token; changes to many tasks go through bulk_tasks, which "
    "previews first and changes nothing until confirmed."
)
# List items show at most this much of a description (and say so); get_task shows it whole.
LIST_DESCRIPTION_MAX = 200
# How many upcoming due dates a preview shows.
PREVIEW_OCCURRENCES = 5
# update_task: an explicit null clears these (the schema says so; elsewhere null is just "omitted").
_CLEARABLE = frozenset({"description", "priority", "tags", "due", "reminders", "recurrence"})

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


def _compact(result: object) -> object:
    """A model result as compact JSON text (the SDK would indent it: tokens for nothing) plus the
    same structured content."""
    if not isinstance(result, BaseModel):
        return result
    data = result.model_dump(mode="json")
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _tool_errors(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Domain errors become tool errors naming the field and rule; anything else is logged, not leaked.
    Changes made through a tool are recorded as done by the agent."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            outcome = "ok"
            try:
                with acting_as("agent"):
                    return _compact(await fn(*args, **kwargs))  # type: ignore[return-value]
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


UserIdArg = Annotated[str | None, Field(description="Optional; only yours.")]
DateArg = Annotated[str | None, Field(max_length=64, description="ISO date or datetime.")]
IdemArg = Annotated[str | None, Field(max_length=128, description="Retry-safe key: a repeat returns the first result.")]
TaskIdArg = Annotated[int, Field(description="The task's id (per user).")]
TitleArg = Annotated[str, Field(max_length=1000, description="1-200 characters.")]
DescriptionArg = Annotated[str | None, Field(max_length=20000, description="Up to 4000 characters.")]
TagsArg = Annotated[list[str] | None, Field(max_length=100, description="Labels, e.g. ['work'].")]
RemindersArg = Annotated[
    list[ReminderIn] | None, Field(max_length=100, description="[{minutes_before: 30}] or [{at: ISO datetime}].")
]
RecurrenceParam = Annotated[RecurrenceArg | None, Field(description="Repeat rule; needs `due`.")]
PreviewArg = Annotated[bool, Field(description="Save nothing; show the result and next 5 due dates.")]

_WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
_READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)


class _LeanServer(MCPServer[Any]):
    """Lists lean input schemas (see mcp_server/schemas.py): the tool list is sent to the model
    with every turn. Calls are still validated by each tool's own argument model, and a refusal
    says which field, why, and what is allowed (mcp_server/validation.py)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(explain(exc.__cause__)) from exc.__cause__
            raise

    async def list_tools(self) -> list[McpTool]:
        return [
            tool.model_copy(
                update={
                    "input_schema": compact_schema(
                        tool.input_schema, nullable=_CLEARABLE if tool.name == "update_task" else frozenset()
                    )
                }
            )
            for tool in await super().list_tools()
        ]


def mcp_for_runtime(
    runtime: Runtime,
    user: UserResolver,
) -> MCPServer[Any]:
    """The one tool registry every transport serves (streamable HTTP in doable.web.app, stdio in
    `doable mcp`): the same tools, whatever the transport; only the user resolver differs (the HTTP
    bearer token is checked in front of it, by mcp_server.scopes.McpGuard)."""
    if runtime.inbox is None or runtime.history is None:
        raise RuntimeError("the runtime has no inbox or history; the MCP server needs both")
    return build_mcp(
        runtime.service,
        user,
        inbox=runtime.inbox,
        history=runtime.history,
        request_state=request_state_security(runtime.settings, runtime.signing_secret),
    )


def request_state_security(settings: Settings, signing_secret: str | None) -> RequestStateSecurity | None:
    """The key that seals what a call asking the user (elicitation) hands the client between rounds.
    Every replica must share it, or a retry landing on another one is refused: the configured keys,
    else one derived from the secret the replicas already share; None (a key of this process
    alone) only when there is no shared secret."""
    keys = [key.get_secret_value() for key in settings.mcp_request_state_keys]
    shared = settings.internal_token_secret.get_secret_value() if settings.internal_token_secret else signing_secret
    if not keys and shared:
        # Its own key, not the token secret itself: a leak of one must not give the other.
        keys = [hmac.new(shared.encode(), b"doable mcp request-state", hashlib.sha256).hexdigest()]
    if not keys and settings.runtime == "dapr":
        log.warning(
            "mcp.request_state_key_per_replica",
            hint="confirmations asked in the client fail when the answer reaches another replica: "
            "set DOABLE_MCP_REQUEST_STATE_KEYS or DOABLE_INTERNAL_TOKEN_SECRET",
        )
    return RequestStateSecurity(keys=keys, audience=MCP_NAME) if keys else None


def build_mcp(
    service: TaskService,
    user: UserResolver,
    *,
    inbox: Inbox,
    history: History,
    request_state: RequestStateSecurity | None = None,
) -> MCPServer[Any]:
    """An MCP server whose tools act for the user that `user()` resolves (token subject or a fixed
    user), with every tool: tasks, bulk and undo, profile, notifications and task history; and
    the prompts and resources people pick in their client."""
    raw_arguments = _RawArguments()
    mcp: MCPServer[Any] = _LeanServer(
        MCP_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        middleware=[raw_arguments],
        request_state_security=request_state,
    )
    raw_arguments.server = mcp

    async def tz_of(user_id: str) -> Any:
        return (await service.get_profile(user_id)).tz

    add_prompts(mcp)
    add_resources(mcp, service, user, tz_of)

    series = SeriesActions(service)

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
        preview: PreviewArg = False,
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
        receipt = Receipt()
        task = await service.add(uid, new, idempotency_key=idempotency_key, preview=preview, receipt=receipt)
        if preview:
            # The next dates come from expanding the rule: off the event loop.
            return await off_loop(task_result, task, "preview", await tz_of(uid), preview=PREVIEW_OCCURRENCES)
        return task_result(task, "created", await tz_of(uid), undo=receipt.undo)

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
        due_after: DateArg = None,
        due_before: DateArg = None,
        search: Annotated[str | None, Field(max_length=200, description="Keyword in title/description.")] = None,
        filter: Annotated[
            str | None,
            Field(max_length=500, description="Text filter: 'overdue & (#work | #home) & p:high', 'due before: friday'."),
        ] = None,
        sort: SortField = SortField.CREATED,
        order: Annotated[Literal["asc", "desc"] | None, Field(description="Default: due/title asc, else desc.")] = None,
        limit: Annotated[int | None, Field(ge=1, le=200, description="Default 50.")] = None,
        cursor: Annotated[str | None, Field(max_length=512, description="next_cursor from the last page.")] = None,
        fields: Annotated[
            list[str] | None, Field(max_length=14, description="Only these task fields (and id), e.g. ['title','due'].")
        ] = None,
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
        return list_view(page, cal, fields=fields, description_max=LIST_DESCRIPTION_MAX)

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
        scope: Annotated[
            Literal["this", "future", "all"],
            Field(description="Repeating task: this occurrence, it and later ones, or all."),
        ] = "future",
        preview: PreviewArg = False,
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
        receipt = Receipt()
        changes = TaskChanges(**given)
        task = await service.update(
            uid, task_id, changes, idempotency_key=idempotency_key, scope=scope, preview=preview, receipt=receipt
        )
        if preview:
            # The next dates come from expanding the rule: off the event loop.
            return await off_loop(task_result, task, "preview", await tz_of(uid), preview=PREVIEW_OCCURRENCES)
        return task_result(task, "updated", await tz_of(uid), undo=receipt.undo)

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("complete_task")
    async def complete_task(
        task_id: TaskIdArg,
        skip: Annotated[bool, Field(description="Repeating task: skip this occurrence; it moves to its next date.")] = False,
        idempotency_key: IdemArg = None,
        user_id: UserIdArg = None,
    ) -> TaskResult:
        """Mark a task done (a repeating task's next occurrence follows)."""
        uid = resolve_user(user, user_id)
        receipt = Receipt()
        if skip:
            task = await series.skip(uid, task_id, idempotency_key=idempotency_key, receipt=receipt)
            return task_result(task, "skipped", await tz_of(uid), undo=receipt.undo)
        task = await service.complete(uid, task_id, idempotency_key=idempotency_key, receipt=receipt)
        return task_result(task, "completed", await tz_of(uid), undo=receipt.undo)

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("reopen_task")
    async def reopen_task(task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None) -> TaskResult:
        """Mark a completed task pending again."""
        uid = resolve_user(user, user_id)
        receipt = Receipt()
        task = await service.reopen(uid, task_id, idempotency_key=idempotency_key, receipt=receipt)
        return task_result(task, "reopened", await tz_of(uid), undo=receipt.undo)

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False))
    @_tool_errors("delete_task")
    async def delete_task(task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None) -> TaskResult:
        """Delete a task."""
        uid = resolve_user(user, user_id)
        receipt = Receipt()
        task = await service.delete(uid, task_id, idempotency_key=idempotency_key, receipt=receipt)
        return task_result(task, "deleted", await tz_of(uid), undo=receipt.undo)

    bulk = Bulk(service)

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False))
    @_tool_errors("bulk_tasks")
    async def bulk_tasks(
        action: Literal["complete", "reopen", "delete", "reschedule"] | None = None,
        task_ids: Annotated[list[Annotated[int, Field(ge=1, le=2**53)]] | None, Field(max_length=200)] = None,
        filter: Annotated[str | None, Field(max_length=500, description="Text filter, as in list_tasks.")] = None,
        due: Annotated[str | None, Field(max_length=64, description="reschedule: new due; a date keeps each time.")] = None,
        confirm_token: Annotated[str | None, Field(max_length=64)] = None,
        idempotency_key: IdemArg = None,
        user_id: UserIdArg = None,
        *,
        # Filled by the SDK, not by the model (not in the schema): see mcp_server/elicitation.py.
        preview: Annotated[BulkOutcome | None, Resolve(preview_for_the_person)],
        answer: Annotated[ElicitationResult[ConfirmChange], Resolve(ask_the_person)],
    ) -> BulkView:
        """Act on many tasks (ids or filter, max 200). Without confirm_token: a preview, changes nothing.
        Confirm with the returned confirm_token."""
        uid = resolve_user(user, user_id)
        receipt = Receipt()
        if preview is not None:
            # The client asked its user (elicitation) about exactly these tasks.
            return await _answered(uid, preview, answer, idempotency_key, receipt)
        outcome = await bulk.run(
            uid,
            action,
            task_ids=task_ids,
            filter=filter,
            due=due,
            confirm_token=confirm_token,
            idempotency_key=idempotency_key,
            receipt=receipt,
        )
        return bulk_view(outcome, await tz_of(uid), receipt.undo)

    async def _answered(
        uid: str,
        preview: BulkOutcome,
        answer: ElicitationResult[ConfirmChange],
        idempotency_key: str | None,
        receipt: Receipt,
    ) -> BulkView:
        tz = await tz_of(uid)
        if preview.confirm_token is None:
            return bulk_view(preview, tz)  # nothing to change, nothing was asked
        if answer.action == "accept":
            done = await bulk.run(
                uid, confirm_token=preview.confirm_token, idempotency_key=idempotency_key, receipt=receipt
            )
            return bulk_view(done, tz, receipt.undo)
        # The token is never shown: the model cannot apply what the person turned down.
        why = "declined it" if answer.action == "decline" else "dismissed the question"
        view = bulk_view(preview.model_copy(update={"confirm_token": None, "expires_at": None}), tz)
        return view.model_copy(update={"note": f"nothing changed: the user {why} in the client"})

    mcp.bulk_asker = BulkAsker(bulk, user)  # type: ignore[attr-defined]

    undoer = Undo(service)

    @mcp.tool(annotations=_WRITE)
    @_tool_errors("undo")
    async def undo(
        token: Annotated[str, Field(max_length=64, description="The `undo` value of a change's result.")],
        idempotency_key: IdemArg = None,
        user_id: UserIdArg = None,
    ) -> UndoView:
        """Reverse a change (within 24 h; refused if its tasks changed since)."""
        uid = resolve_user(user, user_id)
        receipt = Receipt()
        result = await undoer.undo(uid, token, idempotency_key=idempotency_key, receipt=receipt)
        return undo_view(result, receipt.undo)

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
        receipt = Receipt()
        profile = await service.set_timezone(uid, timezone, receipt=receipt)
        return profile_view(uid, service.calendar(profile)).model_copy(update={"undo": receipt.undo})

    @mcp.tool(annotations=_READ)
    @_tool_errors("list_notifications")
    async def list_notifications(
        unread_only: bool = False,
        limit: Annotated[int | None, Field(ge=1, le=200, description="Default 20.")] = None,
        user_id: UserIdArg = None,
    ) -> NotificationListView:
        """The user's reminders (notifications), newest first, and the unread count."""
        uid = resolve_user(user, user_id)
        items, unread = await inbox.recent(uid, unread_only=unread_only, limit=limit)
        tz = await tz_of(uid)
        return NotificationListView(notifications=[notification_view(n, tz) for n in items], unread=unread)

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=True, openWorldHint=False))
    @_tool_errors("mark_read")
    async def mark_read(
        ids: Annotated[
            list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | Literal["all"],
            Field(max_length=1000, description='Notification ids, or "all".'),
        ],
        user_id: UserIdArg = None,
    ) -> MarkReadView:
        """Mark notifications read."""
        uid = resolve_user(user, user_id)
        marked, unread = await inbox.mark_read(uid, ids)
        return MarkReadView(marked=marked, unread=unread)

    @mcp.tool(annotations=_READ)
    @_tool_errors("task_history")
    async def task_history(
        task_id: Annotated[int | None, Field(description="One task's history; omit for recent activity.")] = None,
        limit: Annotated[int | None, Field(ge=1, le=200, description="Default 20.")] = None,
        user_id: UserIdArg = None,
    ) -> HistoryView:
        """What happened to a task (or to all tasks lately), newest first; for a repeating task
        also each occurrence: completed, skipped, missed or rescheduled."""
        uid = resolve_user(user, user_id)
        entries = await history.list(uid, task_id=task_id, limit=limit)
        tz = await tz_of(uid)
        view = history_view(entries, tz, limit)
        if task_id is not None and (records := await series.occurrences(uid, task_id, limit or 20)) is not None:
            view.occurrences = [occurrence_view(r, tz) for r in records]
        return view

    return mcp
