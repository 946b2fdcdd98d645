"""Prompts people pick from the client's menu (Claude Desktop's "+" / slash menu): a plan for
today, a weekly review, a triage of what is overdue. Each is the request a person would type,
with the steps spelled out in Doable's own tool names, so any model gets it right first time.

Prompts are not in the tool list: they cost nothing until picked.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field


def add_prompts(mcp: MCPServer[Any]) -> None:
    @mcp.prompt(name="plan_my_day", title="Plan my day")
    def plan_my_day(
        hours: Annotated[str | None, Field(description="How many hours you have for tasks today, e.g. 5.")] = None,
        focus: Annotated[str | None, Field(description="What matters most today, e.g. a tag like work.")] = None,
    ) -> str:
        """A realistic plan for today from what is due, overdue and important."""
        budget = f" I have about {hours} hours for tasks today." if hours else ""
        priority = f" My focus today: {focus}." if focus else ""
        return (
            f"Plan my day.{budget}{priority}\n"
            "1. Call get_profile for my local date and time.\n"
            "2. Call list_tasks with status 'pending' and filter 'overdue | today', sorted by due; then "
            "list_tasks with status 'pending' and priority ['high'] for important tasks without a date.\n"
            "3. Propose an ordered plan for the rest of today: fixed-time tasks at their times, the rest by "
            "priority and due date, within the time I have. Name what does not fit and suggest a new date.\n"
            "4. Change nothing until I agree. Then use update_task (one task) or bulk_tasks with action "
            "'reschedule' (several) to move what does not fit."
        )

    @mcp.prompt(name="weekly_review", title="Weekly review")
    def weekly_review() -> str:
        """Look back at the last seven days and plan the next seven."""
        return (
            "Run my weekly review.\n"
            "1. Call get_profile for my local date.\n"
            "2. Call task_history (no task_id, limit 100) for what I did this week: count completed, skipped "
            "and missed tasks, and name what stands out.\n"
            "3. Call list_tasks with status 'pending' and filter 'overdue' for what slipped, and with "
            "due 'next_7_days' sorted by due for the week ahead.\n"
            "4. Call list_tasks with status 'pending' and due 'none' for tasks with no date, and ask which "
            "deserve one.\n"
            "5. Summarise in short sections: done, slipped, next week, suggestions. Change nothing until I "
            "agree; then use update_task or bulk_tasks."
        )

    @mcp.prompt(name="triage_overdue", title="Triage overdue tasks")
    def triage_overdue(
        tag: Annotated[str | None, Field(description="Only overdue tasks with this tag, e.g. work.")] = None,
    ) -> str:
        """Decide, task by task, what to do with everything overdue."""
        flt = f"overdue & #{tag.lstrip('#')}" if tag else "overdue"
        return (
            "Help me triage my overdue tasks.\n"
            f"1. Call list_tasks with status 'pending' and filter '{flt}', sorted by due.\n"
            "2. If there are none, say so and stop. Otherwise group them and, for each, suggest one of: do "
            "today, reschedule (with a date), complete (already done), or delete (no longer needed).\n"
            "3. After I confirm the groups, apply each group with one bulk_tasks call (action complete, "
            "delete or reschedule with task_ids). Report what changed and the undo tokens."
        )
