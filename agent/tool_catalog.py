"""The MCP tool listing and its compiled output-schema validators, kept across chat turns.

Each turn opens a new MCP session (its token names the user, see agent.mcp_link). Without this,
every turn lists the tools again (a tools/list round trip, the server serialising every schema,
the Agents SDK deep-copying the list on each model step) and compiles the output-schema
validators of the new session (jsonschema's check_schema: ~10% of a turn's CPU). Neither changes
between turns: the tools are the server's code.

- Listings are kept per user (a user is only ever served a listing fetched with their own token)
  for `ttl` seconds (a redeployed MCP server's new tools are seen within that), the least
  recently used users dropped beyond `max_users`. Equal listings share one list, so many users
  cost one listing's memory.
- Validators depend only on a schema, so they are shared by every session whose schema for that
  tool is equal to the one they were compiled from.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mcp import ClientSession
from mcp.types import ListToolsResult
from mcp.types import Tool as MCPTool

TTL_SECONDS = 300.0
MAX_USERS = 4096


class ToolCatalog:
    def __init__(
        self, *, ttl: float = TTL_SECONDS, max_users: int = MAX_USERS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_users = max_users
        self._clock = clock
        self._listings: OrderedDict[str, tuple[float, list[MCPTool]]] = OrderedDict()
        self._latest: list[MCPTool] | None = None
        # tool name -> (the output schema it was compiled from, the compiled validator)
        self._validators: dict[str, tuple[dict[str, Any], Any]] = {}

    def listing(self, user_id: str) -> list[MCPTool] | None:
        """The tools last listed for `user_id`, unless older than the TTL."""
        entry = self._listings.get(user_id)
        if entry is None:
            return None
        listed_at, tools = entry
        if self._clock() - listed_at > self._ttl:
            del self._listings[user_id]
            return None
        self._listings.move_to_end(user_id)
        return tools

    def remember(self, user_id: str, tools: list[MCPTool]) -> list[MCPTool]:
        """Keep `tools` as `user_id`'s listing; the list kept (an equal one already held, if any)."""
        if self._latest is not None and self._latest == tools:
            tools = self._latest
        else:
            self._latest = tools
        self._listings[user_id] = (self._clock(), tools)
        self._listings.move_to_end(user_id)
        while len(self._listings) > self._max_users:
            self._listings.popitem(last=False)
        return tools

    def prime(self, session: ClientSession, tools: list[MCPTool] | None) -> None:
        """Give a new session what listing the tools would have given it (`tools`, when it was not
        listed through this session), and the validators already compiled for its schemas.

        Uses the session's private state (mcp>=2.3,<3, pinned in pyproject): what it would compute
        itself, for exactly the schemas it holds. tests/chat/test_tool_catalog.py checks it still
        takes effect."""
        if tools is not None:
            session._absorb_tool_listing(ListToolsResult(tools=list(tools)), complete=True)
        schemas = session._tool_output_schemas
        compiled = session._tool_output_validators
        for name, (schema, validator) in self._validators.items():
            held = schemas.get(name)
            if name not in compiled and held is not None and (held is schema or held == schema):
                compiled[name] = validator

    def collect(self, session: ClientSession) -> None:
        """Keep the validators `session` compiled (after a tool call) for the sessions to come."""
        schemas = session._tool_output_schemas
        for name, validator in session._tool_output_validators.items():
            schema = schemas.get(name)
            known = self._validators.get(name)
            if schema is not None and (known is None or known[1] is not validator):
                self._validators[name] = (schema, validator)
