"""Why a chat turn failed, in words for the user: never a traceback, never a secret.

The message goes to the ChatKit UI as an error event (and to the spec endpoint as the
error body); the log gets the exception type, not the conversation.
"""

from __future__ import annotations

import openai
from agents import MaxTurnsExceeded, ModelBehaviorError

from agent.context import ChatFailure
from agent.models import NOT_CONFIGURED
from agent.wire import ModelReplyError

UNCONFIGURED = ChatFailure(503, "chat_unavailable", NOT_CONFIGURED)
TASKS_UNREACHABLE = ChatFailure(
    503, "tasks_unavailable", "I couldn't reach your task list just now. Please try again shortly."
)
STORAGE_UNAVAILABLE = ChatFailure(
    503, "unavailable", "Your tasks and conversations are unavailable right now. Please try again shortly."
)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as raised by task groups in the MCP client,
    each followed by the exceptions it was raised from (the SDK wraps some failures)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def model_failure(exc: BaseException, *, model: str) -> ChatFailure | None:
    """The failure `exc` stands for when it came from the model provider or the agent loop."""
    for leaf in _leaves(exc):
        match leaf:
            case openai.AuthenticationError() | openai.PermissionDeniedError():
                return ChatFailure(502, "model_error", "The model provider refused the API key. Check OPENAI_API_KEY.")
            case openai.NotFoundError():
                return ChatFailure(
                    502, "model_error", f"The model provider has no model named '{model}'. Check DOABLE_MODEL."
                )
            case openai.RateLimitError():
                return ChatFailure(
                    503, "model_unavailable", "The model provider is rate-limiting requests. Try again in a minute."
                )
            case openai.APIConnectionError():  # includes timeouts
                return ChatFailure(
                    503,
                    "model_unavailable",
                    "I couldn't reach the model provider. Check OPENAI_BASE_URL and try again.",
                )
            case openai.APIStatusError() as status_error:
                return ChatFailure(
                    502, "model_error", f"The model provider answered with an error (HTTP {status_error.status_code})."
                )
            case MaxTurnsExceeded():
                return ChatFailure(
                    502, "model_error", "That took more steps than I'm allowed. Try a simpler or more specific request."
                )
            case ModelBehaviorError():
                return ChatFailure(502, "model_error", "The model gave a reply I couldn't use. Please try again.")
            case ModelReplyError(cut=True):
                return ChatFailure(
                    502, "model_error", "The model's answer was cut off before it finished. Please try again."
                )
            case ModelReplyError():
                return ChatFailure(
                    502, "model_error", "The model server sent an answer I couldn't read. Please try again."
                )
            case openai.APIError():  # e.g. an error event inside a stream
                return ChatFailure(502, "model_error", "The model provider reported an error. Please try again.")
    return None


def unexpected(trace_id: str | None) -> ChatFailure:
    return ChatFailure(
        500, "internal", f"Something went wrong while answering (trace {trace_id or 'n/a'}). Please try again."
    )
