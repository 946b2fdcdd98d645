"""The per-request chat context: who is chatting, and what happened during the turn.

ChatKit hands this object to every Store call and to `respond`, so it is where the
authenticated user lives (the Store scopes every query by it) and where the agent
records tool calls for the spec endpoint's `tool_calls`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCallRecord:
    """One MCP tool call of a turn, as the spec endpoint reports it."""

    tool: str
    arguments: dict[str, Any]
    result: Any

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments, "result": self.result}


@dataclass(frozen=True)
class ChatFailure:
    """Why a turn produced no answer: an HTTP status and a message safe to show the user."""

    status: int
    code: str
    message: str


@dataclass
class ChatContext:
    """The authenticated user of one chat request, plus what the turn recorded."""

    user_id: str
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    failure: ChatFailure | None = None
