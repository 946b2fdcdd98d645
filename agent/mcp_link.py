"""How the chat agent reaches the task tools: the MCP server over streamable HTTP, as the user.

Each turn opens its own connection carrying a freshly minted, short-lived token for the
authenticated user (audience: the MCP server). Headers are fixed per connection, so a
connection is never shared between users. The tool listing and the compiled output-schema
validators are kept across turns (agent.tool_catalog), so a turn costs the MCP handshake and
its tool calls only. The `user_id` tool parameter (kept on the MCP
server for spec compatibility) is hidden from the model and dropped from calls: the
user is whoever the token names, never someone the model chose.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import httpx2
import structlog
from agents import AgentBase, RunContextWrapper
from agents.mcp import MCPServerStreamableHttp
from mcp.types import CallToolResult
from mcp.types import Tool as MCPTool

from agent.tool_catalog import ToolCatalog
from doable.platform.auth import ServiceTokens
from doable.platform.settings import Settings

log = structlog.get_logger("doable.chat")

ClientFactory = Callable[..., httpx2.AsyncClient]
"""(headers=, timeout=, auth=) -> httpx2.AsyncClient, as the Agents SDK calls it."""

_HIDDEN_ARGUMENT = "user_id"


def loopback_mcp_url(settings: Settings) -> str:
    """This process's own /mcp as reachable from inside it (the bind address, or loopback)."""
    host = settings.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/mcp"


def in_process(app: Any) -> ClientFactory:
    """A client factory that reaches an ASGI app directly, without a socket (tests, embedding)."""

    def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app),
            base_url="http://127.0.0.1",
            headers=headers,
            timeout=timeout if timeout is not None else 30.0,
            auth=auth,
            follow_redirects=False,
        )

    return factory


def _without_user_id(tool: MCPTool) -> MCPTool:
    schema = dict(tool.input_schema)
    properties = dict(schema.get("properties") or {})
    if _HIDDEN_ARGUMENT not in properties:
        return tool
    properties.pop(_HIDDEN_ARGUMENT)
    schema["properties"] = properties
    if isinstance(schema.get("required"), list):
        schema["required"] = [r for r in schema["required"] if r != _HIDDEN_ARGUMENT]
    return tool.model_copy(update={"input_schema": schema})


class UserTaskTools(MCPServerStreamableHttp):
    """The MCP task tools for the one user named by the connection's token."""

    def __init__(self, params: Any, *, user_id: str, catalog: ToolCatalog, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._user_id = user_id
        self._catalog = catalog
        self._primed = False

    async def list_tools(
        self, run_context: RunContextWrapper[Any] | None = None, agent: AgentBase | None = None
    ) -> list[MCPTool]:
        tools = self._catalog.listing(self._user_id)
        if tools is None:
            tools = self._catalog.remember(self._user_id, await super().list_tools(run_context, agent))
            self._prime(None)
        else:
            self._prime(tools)
        # A new list each time: the caller may change the list (never the tools: the Agents SDK
        # copies a schema before it makes it strict).
        return [_without_user_id(t) for t in tools]

    def _prime(self, tools: list[MCPTool] | None) -> None:
        if self._primed or self.session is None:
            return
        self._primed = True
        self._catalog.prime(self.session, tools)
        if tools is not None:
            # What listing through this server would have cached: the SDK checks a call's
            # required arguments against it before sending the call.
            self._tools_list = tools
            self._cache_dirty = False

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None
    ) -> CallToolResult:
        if arguments and _HIDDEN_ARGUMENT in arguments:
            # Only a confused or manipulated model sends this; the token decides the user anyway.
            log.warning("chat.user_id_argument_dropped", tool=tool_name)
            arguments = {k: v for k, v in arguments.items() if k != _HIDDEN_ARGUMENT}
        result = await super().call_tool(tool_name, arguments, meta)
        if self.session is not None:
            self._catalog.collect(self.session)
        return result


class McpLink:
    """Opens per-turn, per-user connections to the MCP server at `url`."""

    def __init__(self, url: str, tokens: ServiceTokens, *, client_factory: ClientFactory | None = None) -> None:
        self.url = url
        self.client_factory = client_factory
        self._tokens = tokens
        self.catalog = ToolCatalog()
        # Building an SSL context costs milliseconds of CPU (it loads the trust store); the default
        # MCP client builds one per turn. One shared context keeps a chat turn's overhead small.
        self._ssl = ssl.create_default_context()

    def _client(self, headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
        timeout = timeout if timeout is not None else httpx2.Timeout(30.0, read=300.0)
        return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=self._ssl)

    def for_user(self, user_id: str) -> UserTaskTools:
        """An unconnected server for `user_id`; use it as `async with link.for_user(uid) as tools:`."""
        params: dict[str, Any] = {
            "url": self.url,
            "headers": {"Authorization": f"Bearer {self._tokens.mint(user_id)}"},
            "timeout": 15.0,
            "sse_read_timeout": 120.0,
        }
        params["httpx_client_factory"] = self.client_factory or self._client
        return UserTaskTools(
            params,
            user_id=user_id,
            catalog=self.catalog,
            name="doable-tasks",
            cache_tools_list=True,
            # Tool calls hit the database; allow for a slow moment without hanging a turn forever.
            client_session_timeout_seconds=30,
            use_structured_content=True,
        )
