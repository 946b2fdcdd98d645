"""Confirmations in the client: when the client can ask its user (MCP elicitation), bulk_tasks
asks the person to confirm there, instead of handing the model a confirmation token.

Built on the SDK's resolvers (`mcp.server.mcpserver.resolve`). On protocol 2026-07-28 the
question travels in an `InputRequiredResult` and the client retries the call with the answer and
the sealed `request_state`: no session, so it works over stateless HTTP, on any replica that
shares the request-state key (`mcp_server.server.request_state_security`). On older revisions it
is an `elicitation/create` request over the connection's back-channel (stdio, in-memory); stateless
HTTP has none for them, so those clients keep the token path, as do clients that cannot elicit.

Each round previews again, and the question names the tasks as they are now: the SDK accepts an
answer only for the exact question it was given, so if a task changed between the question and
the answer the person is asked again rather than confirming something they did not see.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, ConfigDict

from doable.domain.errors import DoableError
from doable.usecases.bulk import BulkOutcome
from doable.usecases.runner import Outcome
from mcp_server.tooling import tool_deps

# The first revision that carries elicitation inside the call's own result (no back-channel needed).
_SESSIONLESS = "2026-07-28"
# The question lists at most this many tasks, then says how many more.
ASK_LIST_MAX = 15


class ConfirmChange(BaseModel):
    """Nothing to fill in: accepting the form is the confirmation."""

    model_config = ConfigDict(title="Confirm")


def client_can_ask(ctx: Context[Any, Any]) -> bool:
    """The client declared form elicitation and this request can carry the question."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means forms; url-only does not.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, _SESSIONLESS):
        return True
    return bool(ctx.session.can_send_request)


async def preview_for_the_person(
    ctx: Context[Any, Any],
    action: Any,
    task_ids: Any,
    filter: Any,
    due: Any,
    confirm_token: Any,
    user_id: Any,
) -> Outcome[BulkOutcome] | None:
    """The preview the person is asked about (with the user's calendar, to show it); None when
    the call takes the token path (a confirm_token was given, or the client cannot ask). The
    resolvers are module-level functions, so the SDK names them the same in every process; they
    reach the use cases through the server's tool dependencies, as the tools do."""
    if confirm_token is not None or not client_can_ask(ctx):
        return None
    deps = tool_deps(ctx)
    try:
        return await deps.bulk.run(deps.caller(user_id), action, task_ids=task_ids, filter=filter, due=due)
    except DoableError as exc:
        raise ToolError(str(exc)) from None


def question(outcome: BulkOutcome, due: str | None = None) -> str:
    """What the person reads: the action and every task it touches (the same words each round)."""
    count = len(outcome.tasks)
    verb = {"complete": "Complete", "reopen": "Reopen", "delete": "Delete", "reschedule": "Reschedule"}[outcome.action]
    to = f" to {due}" if outcome.action == "reschedule" and due else ""
    lines = [f"{verb} {count} task{'s' if count != 1 else ''}{to}?"]
    for task in outcome.tasks[:ASK_LIST_MAX]:
        lines.append(f"• {task.title}")
    if count > ASK_LIST_MAX:
        lines.append(f"… and {count - ASK_LIST_MAX} more")
    if outcome.action == "delete":
        lines.append("Deleted tasks can be restored with undo for 24 hours.")
    return "\n".join(lines)


async def ask_the_person(
    preview: Annotated[Outcome[BulkOutcome] | None, Resolve(preview_for_the_person)], due: Any
) -> Elicit[ConfirmChange] | None:
    """The question, when there is something to confirm and the client can ask."""
    if preview is None or preview.value.confirm_token is None:
        return None
    return Elicit(question(preview.value, due), ConfirmChange)
