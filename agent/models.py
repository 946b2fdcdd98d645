"""Which model the chat agent talks to, chosen once from Settings.

- OPENAI_API_KEY only: OpenAI's Responses API.
- OPENAI_BASE_URL: an OpenAI-compatible server (Ollama, vLLM, LM Studio) over Chat Completions,
  which most of them speak (DOABLE_MODEL_API=responses for servers that speak Responses).
- neither: no model; chat answers with `NOT_CONFIGURED` and the rest of Doable runs as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from agents import Model, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel, set_tracing_export_api_key
from agents.models.default_models import get_default_model_settings
from openai import AsyncOpenAI

from agent.wire import checked_client
from doable.platform.settings import Settings

log = structlog.get_logger("doable.chat")

NOT_CONFIGURED = (
    "Chat has no model yet. Set OPENAI_API_KEY to use OpenAI, or OPENAI_BASE_URL to use an "
    "OpenAI-compatible server (for Ollama: OPENAI_BASE_URL=http://localhost:11434/v1 and "
    "DOABLE_MODEL=llama3.1), then restart `doable serve`."
)
# OpenAI-compatible servers ignore the key, but the client refuses to start without one.
_PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class ChatModel:
    """The model of every chat turn, with the settings and tracing choice that go with it."""

    model: Model
    settings: ModelSettings
    name: str
    api: str
    tracing: bool
    client: AsyncOpenAI | None = None

    @property
    def label(self) -> str:
        """`api:name`, for logs."""
        return f"{self.api}:{self.name}"

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()


def select_model(settings: Settings) -> ChatModel | None:
    """The configured model, or None when chat has no model (see NOT_CONFIGURED)."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    base_url = settings.openai_base_url
    if key is None and base_url is None:
        return None
    client = AsyncOpenAI(
        api_key=key or _PLACEHOLDER_KEY,
        base_url=base_url,
        timeout=60.0,
        max_retries=2,
        # Answers the agent cannot use (not JSON, a stream cut short) fail loudly (agent/wire.py).
        http_client=checked_client(60.0),
    )
    api = settings.model_api
    if api == "auto":
        api = "chat_completions" if base_url else "responses"
    model: Model
    if api == "responses":
        model = OpenAIResponsesModel(model=settings.model, openai_client=client)
    else:
        model = OpenAIChatCompletionsModel(model=settings.model, openai_client=client)
    # Traces go to OpenAI only when asked for, and only with a real OpenAI key to send them with.
    tracing = settings.openai_tracing and key is not None and base_url is None
    if tracing and key is not None:
        set_tracing_export_api_key(key)
    elif settings.openai_tracing:
        log.warning("chat.tracing_unavailable", reason="tracing needs OPENAI_API_KEY and OpenAI's own endpoint")
    return ChatModel(
        model=model,
        # Reasoning defaults only for the models that take them (a local Llama would reject them).
        settings=get_default_model_settings(settings.model),
        name=settings.model,
        api=api,
        tracing=tracing,
        client=client,
    )
