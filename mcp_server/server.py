"""The MCP server every transport serves: the tools of the one registry (mcp_server.tools), the
prompts and resources, lean input schemas for the model and flat output schemas for the client.

Streamable HTTP (doable.web.app) and stdio (`doable mcp`) both build it here, so their tools
cannot differ; only the user resolver does (the verified bearer token's subject over HTTP, checked
in front by mcp_server.scopes.McpGuard; the user settled at start over stdio).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

import structlog
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.request_state import RequestStateSecurity
from mcp.types import Tool as McpTool
from pydantic import ValidationError

from doable import __version__
from doable.usecases.history import History
from doable.usecases.inbox import Inbox
from doable.usecases.service import TaskService
from mcp_server.identity import UserResolver
from mcp_server.prompts import add_prompts
from mcp_server.resources import add_resources
from mcp_server.schemas import compact_schema, flat_output_schema
from mcp_server.tooling import RawArguments, ToolDeps
from mcp_server.tools import NULLABLE_ARGUMENTS, TOOLS
from mcp_server.validation import explain

log = structlog.get_logger("doable.mcp")

MCP_NAME = "doable"

INSTRUCTIONS = (
    "Doable manages the signed-in user's tasks. Task ids are per user; never guess one: "
    "list or search first. Times without an offset are in the user's timezone (see get_profile). "
    "Every change returns an `undo` token; changes to many tasks go through bulk_tasks, which "
    "previews first and changes nothing until confirmed."
)


class DoableMcp(MCPServer[Any]):
    """Lists lean input schemas (see mcp_server/schemas.py): the tool list is sent to the model
    with every turn. Calls are still validated by each tool's own argument model, and a refusal
    says which field, why, and what is allowed (mcp_server/validation.py). Holds the tools'
    dependencies, which each tool reaches through its call's Context."""

    def __init__(
        self,
        deps: ToolDeps,
        tools: list[Tool],
        *,
        middleware: list[RawArguments],
        request_state: RequestStateSecurity | None,
    ) -> None:
        super().__init__(
            MCP_NAME,
            version=__version__,
            instructions=INSTRUCTIONS,
            tools=tools,
            middleware=middleware,
            request_state_security=request_state,
        )
        self.tool_deps = deps
        self._declares_headers: dict[str, tuple[dict[str, Any], bool]] = {}

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(explain(exc.__cause__)) from exc.__cause__
            raise

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        """The schema the SDK checks a call's `Mcp-Param-*` headers against, or None when the tool
        declares none (`x-mcp-header`): the SDK would walk the whole schema on every call to
        find none, and a tool without one accepts any header (mcp.shared.inbound)."""
        schema = super()._tool_input_schema(name)
        if schema is None:
            return None
        known = self._declares_headers.get(name)
        if known is None or known[0] is not schema:  # a tool added (again) since: look at its schema
            known = self._declares_headers[name] = (schema, '"x-mcp-header"' in json.dumps(schema))
        return schema if known[1] else None

    async def list_tools(self) -> list[McpTool]:
        return [
            tool.model_copy(
                update={
                    "input_schema": compact_schema(
                        tool.input_schema, nullable=NULLABLE_ARGUMENTS.get(tool.name, frozenset())
                    )
                }
            )
            for tool in await super().list_tools()
        ]


def registered_tools() -> list[Tool]:
    """The registry's tools, each publishing a flat output schema (mcp_server.schemas) that clients
    validate every result against; the SDK still checks each result against the return model."""
    tools = []
    for spec in TOOLS:
        tool = Tool.from_function(spec.fn, annotations=spec.annotations)
        if tool.fn_metadata.output_schema is not None:
            tool.fn_metadata.output_schema = flat_output_schema(tool.fn_metadata.output_schema)
        tools.append(tool)
    return tools


def request_state_security(
    keys: Sequence[str], shared_secret: str | None, *, replicated: bool
) -> RequestStateSecurity | None:
    """The key that seals what a call asking the user (elicitation) hands the client between rounds.
    Every replica must share it, or a retry landing on another one is refused: the configured
    `keys`, else one derived from the secret the replicas already share; None (a key of this
    process alone) only when there is no shared secret, which `replicated` deployments warn about."""
    sealing = list(keys)
    if not sealing and shared_secret:
        # Its own key, not the token secret itself: a leak of one must not give the other.
        sealing = [hmac.new(shared_secret.encode(), b"doable mcp request-state", hashlib.sha256).hexdigest()]
    if not sealing and replicated:
        log.warning(
            "mcp.request_state_key_per_replica",
            hint="confirmations asked in the client fail when the answer reaches another replica: "
            "set DOABLE_MCP_REQUEST_STATE_KEYS or DOABLE_INTERNAL_TOKEN_SECRET",
        )
    return RequestStateSecurity(keys=sealing, audience=MCP_NAME) if sealing else None


def build_mcp(
    service: TaskService,
    user: UserResolver,
    *,
    inbox: Inbox,
    history: History,
    request_state: RequestStateSecurity | None = None,
) -> DoableMcp:
    """An MCP server whose tools act for the user that `user()` resolves (token subject or a fixed
    user), with every tool of the registry: tasks, bulk and undo, profile, notifications and task
    history; and the prompts and resources people pick in their client."""
    deps = ToolDeps(
        tasks=service.tasks,
        series=service.series,
        bulk=service.bulk,
        undo=service.undoer,
        inbox=inbox,
        history=history,
        user=user,
    )
    raw_arguments = RawArguments()
    mcp = DoableMcp(deps, registered_tools(), middleware=[raw_arguments], request_state=request_state)
    raw_arguments.server = mcp
    add_prompts(mcp)
    add_resources(mcp, deps)
    return mcp
