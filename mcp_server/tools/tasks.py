"""The task tools: add, list, get, update, complete (or skip), reopen and delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from doable.domain.query import SortField, Status
from doable.domain.task import Priority, Task
from doable.platform.offload import off_loop
from doable.usecases.inputs import DueText, ListRequest, NewTask, TaskChanges
from doable.usecases.runner import Outcome
from doable.usecases.views import TaskListView, TaskResult, list_page, task_result
from mcp_server.tooling import (
    DateArg,
    DescriptionArg,
    IdemArg,
    PreviewArg,
    RecurrenceParam,
    RemindersArg,
    TagsArg,
    TaskIdArg,
    TitleArg,
    UserIdArg,
    raw_arguments,
    structured,
    tool_deps,
    tool_errors,
)

# List items show at most this much of a description (and say so); get_task shows it whole.
LIST_DESCRIPTION_MAX = 200
# How many upcoming due dates a preview shows.
PREVIEW_OCCURRENCES = 5
# update_task: an explicit null clears these (the schema says so; elsewhere null is just "omitted").
CLEARABLE = frozenset({"description", "priority", "tags", "due", "reminders", "recurrence"})


def present(outcome: Outcome[Task], status: str) -> TaskResult:
    """The result of a tool call on one task, in the user's timezone, with its undo token."""
    return task_result(outcome.value, status, outcome.calendar.tz, undo=outcome.undo)


async def present_preview(outcome: Outcome[Task]) -> TaskResult:
    # The next dates come from expanding the rule: off the event loop.
    return await off_loop(task_result, outcome.value, "preview", outcome.calendar.tz, preview=PREVIEW_OCCURRENCES)


@tool_errors
async def add_task(
    ctx: Context[Any, Any],
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
    deps = tool_deps(ctx)
    new = NewTask(
        title=title,
        description=description,
        priority=priority,
        tags=tags,
        due=due,
        reminders=reminders,
        recurrence=recurrence,
    )
    done = await deps.tasks.add(deps.caller(user_id), new, idempotency_key=idempotency_key, preview=preview)
    return await present_preview(done) if preview else present(done, "created")


@tool_errors
async def list_tasks(
    ctx: Context[Any, Any],
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
) -> Annotated[CallToolResult, TaskListView]:
    """List, search, filter and sort tasks. Includes the user's now/today."""
    deps = tool_deps(ctx)
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
    page = await deps.tasks.list(deps.caller(user_id), request)
    return structured(list_page(page.value, page.calendar, fields=fields, description_max=LIST_DESCRIPTION_MAX))


@tool_errors
async def get_task(ctx: Context[Any, Any], task_id: TaskIdArg, user_id: UserIdArg = None) -> TaskResult:
    """One task with all its details."""
    deps = tool_deps(ctx)
    return present(await deps.tasks.get(deps.caller(user_id), task_id), "found")


@tool_errors
async def update_task(
    ctx: Context[Any, Any],
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
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    values = {
        "title": title,
        "description": description,
        "priority": priority,
        "tags": tags,
        "due": due,
        "reminders": reminders,
        "recurrence": recurrence,
    }
    raw = raw_arguments()
    given = {k: v for k, v in values.items() if k in raw} if raw else {k: v for k, v in values.items() if v is not None}
    changes = TaskChanges(**given)
    done = await deps.tasks.update(uid, task_id, changes, idempotency_key=idempotency_key, scope=scope, preview=preview)
    return await present_preview(done) if preview else present(done, "updated")


@tool_errors
async def complete_task(
    ctx: Context[Any, Any],
    task_id: TaskIdArg,
    skip: Annotated[
        bool, Field(description="Repeating task: skip this occurrence; it moves to its next date.")
    ] = False,
    idempotency_key: IdemArg = None,
    user_id: UserIdArg = None,
) -> TaskResult:
    """Mark a task done (a repeating task's next occurrence follows)."""
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    if skip:
        return present(await deps.series.skip(uid, task_id, idempotency_key=idempotency_key), "skipped")
    return present(await deps.tasks.complete(uid, task_id, idempotency_key=idempotency_key), "completed")


@tool_errors
async def reopen_task(
    ctx: Context[Any, Any], task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None
) -> TaskResult:
    """Mark a completed task pending again."""
    deps = tool_deps(ctx)
    done = await deps.tasks.reopen(deps.caller(user_id), task_id, idempotency_key=idempotency_key)
    return present(done, "reopened")


@tool_errors
async def delete_task(
    ctx: Context[Any, Any], task_id: TaskIdArg, idempotency_key: IdemArg = None, user_id: UserIdArg = None
) -> TaskResult:
    """Delete a task."""
    deps = tool_deps(ctx)
    done = await deps.tasks.delete(deps.caller(user_id), task_id, idempotency_key=idempotency_key)
    return present(done, "deleted")
