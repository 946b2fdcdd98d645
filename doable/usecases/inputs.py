"""Request shapes shared by every transport (MCP tools, REST, the chat agent).

Field descriptions are model-facing documentation: keep them short and exact.
The service applies the real rules; these only give shape and schema.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from doable.domain.query import LIMIT_MAX, SortField, Status
from doable.domain.task import Priority

DueText = Annotated[
    str,
    Field(
        max_length=64,
        description="ISO 8601: '2026-12-01' (all-day), '2026-12-01T09:00' (user's timezone) or with offset/Z.",
    ),
]


class ReminderIn(BaseModel):
    """A reminder: `at` an ISO datetime, or `minutes_before` the due time."""

    model_config = ConfigDict(extra="forbid")

    at: Annotated[str | None, Field(max_length=64, description="ISO datetime to remind at.")] = None
    minutes_before: Annotated[int | None, Field(description="Minutes before due (needs a due date).")] = None


class RecurrenceIn(BaseModel):
    """How a task repeats: a `rule` (preset or RRULE) or a `frequency` with its parts. The next
    occurrence is created when one is completed."""

    model_config = ConfigDict(extra="forbid")

    rule: Annotated[
        str | None,
        Field(
            max_length=500,
            description="Preset (daily, weekdays, weekly, monthly, yearly, 'every N days') or RRULE; or use frequency.",
        ),
    ] = None
    frequency: Literal["daily", "weekly", "monthly", "yearly"] | None = None
    interval: Annotated[int | None, Field(ge=1, le=999)] = None
    by_day: Annotated[list[str] | None, Field(max_length=35, description="e.g. ['MO','WE'], ['-1FR'].")] = None
    by_month_day: Annotated[list[int] | None, Field(max_length=31, description="29-31 clamp to month end.")] = None
    by_set_pos: Annotated[list[int] | None, Field(max_length=31)] = None
    count: Annotated[int | None, Field(description="Total occurrences.")] = None
    until: Annotated[date | None, Field(description="Last date.")] = None
    anchor: Annotated[
        Literal["schedule", "completion", "schedule_if_on_time"] | None,
        Field(description="Next date from the schedule (default) or from completion."),
    ] = None


RecurrenceArg = RecurrenceIn | Annotated[str, Field(max_length=500)]


class NewTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(max_length=1000, description="1-200 characters.")]
    description: Annotated[str | None, Field(max_length=20000, description="Up to 4000 characters.")] = None
    priority: Priority | None = None
    tags: Annotated[list[str] | None, Field(max_length=100, description="Up to 20 labels, e.g. ['work'].")] = None
    due: DueText | None = None
    reminders: Annotated[list[ReminderIn] | None, Field(max_length=100)] = None
    recurrence: Annotated[
        RecurrenceArg | None, Field(description="Preset/RRULE string or object; needs a due date.")
    ] = None


class TaskChanges(BaseModel):
    """Partial update: omitted fields stay; null clears description, due, reminders, recurrence, tags."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str | None, Field(max_length=1000)] = None
    description: Annotated[str | None, Field(max_length=20000)] = None
    priority: Priority | None = None
    tags: Annotated[list[str] | None, Field(max_length=100)] = None
    due: DueText | None = None
    reminders: Annotated[list[ReminderIn] | None, Field(max_length=100)] = None
    recurrence: RecurrenceArg | None = None


DueWindow = Literal["overdue", "today", "tomorrow", "this_week", "next_7_days", "none", "any"]


class ListRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Annotated[Status, Field(description="all | pending | completed.")] = Status.ALL
    priority: Annotated[list[Priority] | None, Field(max_length=4, description="Any of these priorities.")] = None
    tags: Annotated[list[str] | None, Field(max_length=20, description="Tasks with these tags.")] = None
    tags_mode: Annotated[Literal["any", "all"], Field(description="Match any or all of `tags`.")] = "any"
    due: Annotated[DueWindow | None, Field(description="Due window in the user's timezone.")] = None
    due_after: DueText | None = None
    due_before: DueText | None = None
    search: Annotated[str | None, Field(max_length=200, description="Keyword in title or description.")] = None
    filter: Annotated[
        str | None,
        Field(max_length=500, description="Text filter, e.g. 'overdue & (#work | #home) & p:high', 'due before: friday'."),
    ] = None
    sort: SortField = SortField.CREATED
    order: Annotated[Literal["asc", "desc"] | None, Field(description="Default: due/title asc, others desc.")] = None
    limit: Annotated[int | None, Field(ge=1, le=LIMIT_MAX, description=f"1-{LIMIT_MAX}, default 50.")] = None
    cursor: Annotated[str | None, Field(max_length=512, description="next_cursor of the previous page.")] = None
