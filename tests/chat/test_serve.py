"""Chat in a served process: over real sockets, the agent reaching /mcp on loopback as in production."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from agents.testing import assistant_message, function_call

from doable.bootstrap import build
from doable.domain.clock import ManualClock
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest
from doable.web.app import create_app
from tests.chat.conftest import Process, sse_events, text_input
from tests.conftest import auth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def on_a_port(settings: Settings, clock: ManualClock) -> AsyncIterator[Process]:
    """The app served by uvicorn on a free port; its chat uses the default (loopback) MCP link."""
    settings = settings.model_copy(update={"port": _free_port()})
    runtime = await build(settings, clock=clock)
    app = create_app(runtime)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag, no event
                await asyncio.sleep(0.02)
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as http:
            yield Process(runtime, app, app.state.chat, http)
    finally:
        server.should_exit = True
        await serving
        await runtime.aclose()


async def test_the_agent_reaches_the_mcp_tools_over_loopback(on_a_port: Process, token_for: Callable[..., str]) -> None:
    assert on_a_port.chat.link.client_factory is None
    assert on_a_port.chat.link.url == f"http://127.0.0.1:{on_a_port.runtime.settings.port}/mcp"
    on_a_port.script(
        [[function_call("add_task", {"title": "Buy milk"}, call_id="c1")], [assistant_message("Added.", item_id="m1")]]
    )

    turn = await on_a_port.chatkit(token_for("alice")).create("add buy milk")

    assert turn.replies == ["Added."] and not turn.errors
    page, _ = await on_a_port.runtime.service.list("alice", ListRequest())
    assert [t.title for t in page.tasks] == ["Buy milk"]


@pytest.mark.slow
def test_doable_serve_without_a_model_starts_and_chat_says_what_to_set(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOABLE_", "OPENAI_"))}
    env.update({"DOABLE_DATA_DIR": str(tmp_path / "data"), "DOABLE_LOG_FORMAT": "json"})
    doable = [sys.executable, "-m", "doable.cli"]
    proc = subprocess.Popen(
        [*doable, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx2.Client(base_url=base, timeout=5) as http:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx2.HTTPError:
                    time.sleep(0.1)  # a sync test polling a subprocess; no event loop to block
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "serve exited"
            assert http.get("/readyz").status_code == 200, "doable serve did not become ready"
            token = subprocess.run(
                [*doable, "token", "--user", "alice"], env=env, capture_output=True, text=True, check=True
            ).stdout.strip()

            response = http.post(
                "/chatkit",
                content=json.dumps({"type": "threads.create", "params": {"input": text_input("hello")}}),
                headers={**auth(token), "Content-Type": "application/json"},
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    assert response.status_code == 200
    [error] = [e for e in sse_events(response.text) if e["type"] == "error"]
    assert "OPENAI_API_KEY" in error["message"]
