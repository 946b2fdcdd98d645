"""The one tool registry: every tool, in the order tools/list shows them, with its annotations
(which also decide the scope a call needs: mcp_server/scopes.py). Both transports (streamable
HTTP and stdio) serve a server built from this list by mcp_server.server.build_mcp, so their tool
sets cannot differ. A new tool is a module-level function in one of these modules, wrapped in
`tool_errors`, taking the call's Context for its dependencies, and a line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.types import ToolAnnotations

from mcp_server.tooling import DESTRUCTIVE, IDEMPOTENT_WRITE, READ, WRITE
from mcp_server.tools import account, changes, tasks


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Any]
    annotations: ToolAnnotations

    @property
    def name(self) -> str:
        return self.fn.__name__


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(tasks.add_task, WRITE),
    ToolSpec(tasks.list_tasks, READ),
    ToolSpec(tasks.get_task, READ),
    ToolSpec(tasks.update_task, WRITE),
    ToolSpec(tasks.complete_task, WRITE),
    ToolSpec(tasks.reopen_task, WRITE),
    ToolSpec(tasks.delete_task, DESTRUCTIVE),
    ToolSpec(changes.bulk_tasks, DESTRUCTIVE),
    ToolSpec(changes.undo, WRITE),
    ToolSpec(account.get_profile, READ),
    ToolSpec(account.set_timezone, WRITE),
    ToolSpec(account.list_notifications, READ),
    ToolSpec(account.mark_read, IDEMPOTENT_WRITE),
    ToolSpec(account.task_history, READ),
)

# Input schemas where an explicit null means something (update_task: null clears a field).
NULLABLE_ARGUMENTS: dict[str, frozenset[str]] = {"update_task": tasks.CLEARABLE}
