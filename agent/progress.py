"""What the user sees while tools run, and what the turn remembers about them.

Server-side tool calls are not ChatKit items, so without this the UI would sit silent
while a task is saved. `TurnHooks` streams a progress line as each tool starts
("Adding 'Buy milk'…") and records each call for the spec endpoint's `tool_calls`.
"""

from __future__ import annotations

import json
from typing import Any

from agents import Agent, RunContextWrapper, RunHooks, Tool
from agents.tool_context import ToolContext
from chatkit.agents import AgentContext
from chatkit.icons import IconName
from chatkit.types import ProgressUpdateEvent

from agent.context import ChatContext, ToolCallRecord

_TITLE_MAX = 60


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _TITLE_MAX else text[: _TITLE_MAX - 1].rstrip() + "…"


def describe(tool: str, args: dict[str, Any]) -> tuple[IconName, str]:
    """The icon and text of the progress line for `tool` called with `args`."""
    title = _short(str(args["title"])) if isinstance(args.get("title"), str) else None
    task = f"task {args['task_id']}" if "task_id" in args else "the task"
    match tool:
        case "add_task":
            return "plus", f"Adding '{title}'…" if title else "Adding a task…"
        case "list_tasks":
            return "search", f"Searching your tasks for '{_short(str(args['search']))}'…" if args.get(
                "search"
            ) else "Looking at your tasks…"
        case "get_task":
            return "search", f"Looking up {task}…"
        case "update_task":
            return "write", f"Updating {task}…"
        case "complete_task":
            return "check-circle", f"Completing {task}…"
        case "reopen_task":
            return "reload", f"Reopening {task}…"
        case "delete_task":
            return "lucide:trash-2", f"Deleting {task}…"
        case "get_profile":
            return "clock", "Checking your timezone…"
        case "set_timezone":
            return "globe", f"Setting your timezone to {_short(str(args.get('timezone', '')))}…"
        case _:
            return "bolt", "Working on it…"


def _arguments(context: RunContextWrapper[Any]) -> dict[str, Any]:
    raw = context.tool_arguments if isinstance(context, ToolContext) else ""
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    # Recorded as the MCP server received them (agent.mcp_link drops any user_id).
    parsed.pop("user_id", None)
    return parsed


def _result(output: object) -> Any:
    """A tool output as JSON data when it is JSON (structured results), else its text."""
    if isinstance(output, dict) and output.get("type") == "text":
        output = output.get("text", "")
    if isinstance(output, str):
        try:
            return json.loads(output)
        except ValueError:
            return output
    return str(output)


class TurnHooks(RunHooks[AgentContext[ChatContext]]):
    """Progress updates and tool-call records for one turn."""

    def __init__(self) -> None:
        self.last_tool: str | None = None
        self.last_result: Any = None

    async def on_tool_start(
        self, context: RunContextWrapper[AgentContext[ChatContext]], agent: Agent[Any], tool: Tool
    ) -> None:
        icon, text = describe(tool.name, _arguments(context))
        await context.context.stream(ProgressUpdateEvent(icon=icon, text=text))

    async def on_tool_end(
        self, context: RunContextWrapper[AgentContext[ChatContext]], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        parsed = _result(result)
        self.last_tool, self.last_result = tool.name, parsed
        context.context.request_context.tool_calls.append(
            ToolCallRecord(tool=tool.name, arguments=_arguments(context), result=parsed)
        )
