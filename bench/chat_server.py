"""`doable serve` with an instant scripted model: `python -m bench.chat_server` (env as for serve).

The same runtime, app and chat server as `doable serve` (doable.cli._serve), with one change: the
chat model is a scripted Agents SDK model that answers at once. Every turn it calls one tool
(add_task, through the real MCP link over loopback HTTP, as the user), then answers. So a turn's
time is Doable's own work: ChatKit, the Store, the history, the agent loop, MCP, the service.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents import ModelSettings
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

from doable.platform import logs
from doable.platform.settings import Settings

_ids = itertools.count(1)


class InstantModel(ScriptedModel):
    """A model that never runs out: a tool call first, then the answer once the tool's output is in."""

    def __init__(self) -> None:
        super().__init__()

    async def _next_resolved_step(self, call: Any) -> ModelStep:
        self._calls.clear()  # keep no history: this model serves every turn of the process
        self.enqueue(ModelStep.respond(_respond))
        return await super()._next_resolved_step(call)


def _respond(call: Any) -> Any:
    items = call.input if isinstance(call.input, list) else []
    last = items[-1] if items else {}
    n = next(_ids)
    if isinstance(last, dict) and last.get("type") == "function_call_output":
        return [assistant_message(f"Added it (#{n}).", item_id=f"msg-{n}")]
    return [function_call("add_task", {"title": f"Chat task {n}", "priority": "high"}, call_id=f"call-{n}")]


def instant_chat_model(chat_model_type: Any) -> Any:
    """agent.models.ChatModel around InstantModel (its fields have changed over time: fill the ones it has)."""
    import dataclasses

    known = {"model": InstantModel(), "settings": ModelSettings(), "tracing": False, "label": "scripted:instant",
             "name": "instant", "api": "scripted", "client": None}  # fmt: skip
    names = {f.name for f in dataclasses.fields(chat_model_type)}
    return chat_model_type(**{k: v for k, v in known.items() if k in names})


async def serve(settings: Settings) -> None:
    import uvicorn

    from agent.models import ChatModel
    from doable.bootstrap import build
    from doable.web.app import create_app

    runtime = await build(settings)
    try:
        app = create_app(runtime)
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[Any]:
            async with inner(a) as state:
                a.state.chat.model = instant_chat_model(ChatModel)
                yield state

        app.router.lifespan_context = lifespan
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        await uvicorn.Server(config).serve()
    finally:
        await runtime.aclose()


def main() -> None:
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
