"""The tools for changes to many tasks and for taking a change back: bulk_tasks and undo."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from pydantic import Field

from doable.usecases.bulk import BulkOutcome, BulkView, bulk_view
from doable.usecases.runner import Outcome
from doable.usecases.undo import UndoView, undo_view
from mcp_server.elicitation import ConfirmChange, ask_the_person, preview_for_the_person
from mcp_server.tooling import IdemArg, ToolDeps, UserIdArg, tool_deps, tool_errors


@tool_errors
async def bulk_tasks(
    ctx: Context[Any, Any],
    action: Literal["complete", "reopen", "delete", "reschedule"] | None = None,
    task_ids: Annotated[list[Annotated[int, Field(ge=1, le=2**53)]] | None, Field(max_length=200)] = None,
    filter: Annotated[str | None, Field(max_length=500, description="Text filter, as in list_tasks.")] = None,
    due: Annotated[str | None, Field(max_length=64, description="reschedule: new due; a date keeps each time.")] = None,
    confirm_token: Annotated[str | None, Field(max_length=64)] = None,
    idempotency_key: IdemArg = None,
    user_id: UserIdArg = None,
    *,
    # Filled by the SDK, not by the model (not in the schema): see mcp_server/elicitation.py.
    preview: Annotated[Outcome[BulkOutcome] | None, Resolve(preview_for_the_person)],
    answer: Annotated[ElicitationResult[ConfirmChange], Resolve(ask_the_person)],
) -> BulkView:
    """Act on many tasks (ids or filter, max 200). Without confirm_token: a preview, changes nothing.
    Confirm with the returned confirm_token."""
    deps = tool_deps(ctx)
    uid = deps.caller(user_id)
    if preview is not None:
        # The client asked its user (elicitation) about exactly these tasks.
        return await _answered(deps, uid, preview, answer, idempotency_key)
    outcome = await deps.bulk.run(
        uid,
        action,
        task_ids=task_ids,
        filter=filter,
        due=due,
        confirm_token=confirm_token,
        idempotency_key=idempotency_key,
    )
    return bulk_view(outcome.value, outcome.calendar.tz, outcome.undo)


async def _answered(
    deps: ToolDeps,
    uid: str,
    preview: Outcome[BulkOutcome],
    answer: ElicitationResult[ConfirmChange],
    idempotency_key: str | None,
) -> BulkView:
    tz = preview.calendar.tz
    if preview.value.confirm_token is None:
        return bulk_view(preview.value, tz)  # nothing to change, nothing was asked
    if answer.action == "accept":
        done = await deps.bulk.run(uid, confirm_token=preview.value.confirm_token, idempotency_key=idempotency_key)
        return bulk_view(done.value, done.calendar.tz, done.undo)
    # The token is never shown: the model cannot apply what the person turned down.
    why = "declined it" if answer.action == "decline" else "dismissed the question"
    view = bulk_view(preview.value.model_copy(update={"confirm_token": None, "expires_at": None}), tz)
    return view.model_copy(update={"note": f"nothing changed: the user {why} in the client"})


@tool_errors
async def undo(
    ctx: Context[Any, Any],
    token: Annotated[str, Field(max_length=64, description="The `undo` value of a change's result.")],
    idempotency_key: IdemArg = None,
    user_id: UserIdArg = None,
) -> UndoView:
    """Reverse a change (within 24 h; refused if its tasks changed since)."""
    deps = tool_deps(ctx)
    done = await deps.undo.undo(deps.caller(user_id), token, idempotency_key=idempotency_key)
    return undo_view(done.value, done.undo)
