"""What every tool shares: the dependencies it acts with (`ToolDeps`, reached through the call's
Context, so a tool is a plain module-level function), the wrapper that turns errors into tool
errors naming the field and rule, the compact result, and the raw arguments of the call.

Tool and parameter descriptions are what the model reads; every token counts.
"""

from __future__ import annotations

import contextvars
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, ParamSpec, TypeVar

import structlog
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from doable.domain.errors import DoableError
from doable.platform.actor import acting_as
from doable.platform.logs import current_trace_id
from doable.platform.metrics import TOOL_LATENCY
from doable.usecases.bulk import Bulk
from doable.usecases.history import History
from doable.usecases.inbox import Inbox
from doable.usecases.inputs import RecurrenceArg, ReminderIn
from doable.usecases.series import SeriesActions
from doable.usecases.tasks import TaskUseCases
from doable.usecases.undo import Undo
from mcp_server.identity import UserResolver, resolve_user

log = structlog.get_logger("doable.mcp")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class ToolDeps:
    """What the tools act with: the use cases, the reminder inbox, the history, and who the caller
    is (the verified token's subject over HTTP, the user settled at start over stdio)."""

    tasks: TaskUseCases
    series: SeriesActions
    bulk: Bulk
    undo: Undo
    inbox: Inbox
    history: History
    user: UserResolver

    def caller(self, claimed: str | None) -> str:
        """The caller's user id; a `user_id` argument (kept for spec compatibility) must match it."""
        return resolve_user(self.user, claimed)


def tool_deps(ctx: Context[Any, Any]) -> ToolDeps:
    """The dependencies of the server the call runs in (mcp_server.server.build_mcp sets them)."""
    deps = getattr(ctx.mcp_server, "tool_deps", None)
    if not isinstance(deps, ToolDeps):
        raise RuntimeError("this MCP server has no tool dependencies; build it with mcp_server.server.build_mcp")
    return deps


# The raw `arguments` of the current tools/call, so update_task can tell an explicit null (clear)
# from an omitted field (keep). Set by RawArguments, an MCP server middleware.
_raw_arguments: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mcp_raw_arguments", default=None
)


def raw_arguments() -> dict[str, Any] | None:
    return _raw_arguments.get()


class RawArguments:
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


def compact(result: object) -> object:
    """A model result as compact JSON text (the SDK would indent it: tokens for nothing) plus the
    same structured content."""
    if not isinstance(result, BaseModel) or isinstance(result, CallToolResult):
        return result
    return structured(result.model_dump(mode="json"))


def structured(data: dict[str, Any]) -> CallToolResult:
    """A tool's result that is already JSON: the same compact text and structured content as
    `compact`. The tool declares its model as `Annotated[CallToolResult, Model]`: the SDK then
    publishes the model's schema and checks `data` against it."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Domain errors become tool errors naming the field and rule; anything else is logged, not leaked.
    Changes made through a tool are recorded as done by the agent."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        outcome = "ok"
        try:
            with acting_as("agent"):
                return compact(await fn(*args, **kwargs))  # type: ignore[return-value]
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

WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)
IDEMPOTENT_WRITE = ToolAnnotations(readOnlyHint=False, idempotentHint=True, openWorldHint=False)
