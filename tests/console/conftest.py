"""Browser tests of the web console: Debian's Chromium driven by Playwright (no browser download)
against a real `doable serve`, whose chat model is a scripted OpenAI-compatible server run here."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from doable.platform.auth import mint
from tests.conftest import JWT_SECRET

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Records every `new Notification(...)`: headless Chromium may not show them.
RECORD_NOTIFICATIONS = """
(() => {
  window.__notifications = [];
  const Real = window.Notification;
  if (!Real) return;
  class Recording extends Real {
    constructor(title, options) {
      window.__notifications.push({ title, body: options && options.body, tag: options && options.tag });
      super(title, options);
    }
  }
  window.Notification = Recording;
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- a scripted model behind an OpenAI-compatible Chat Completions endpoint -------------------


@dataclass
class ScriptedModel:
    """ "add <title>" → an add_task tool call, then "Added “<title>”." once the tool answered."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def reply(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        """(text, tool call) for the conversation so far."""
        messages = body["messages"]
        last = messages[-1]
        if last["role"] == "tool":
            call = next(m for m in reversed(messages) if m["role"] == "assistant" and m.get("tool_calls"))
            title = json.loads(call["tool_calls"][0]["function"]["arguments"])["title"]
            return f"Added “{title}”. Anything else?", None
        content = last.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
        if match := re.match(r"^\s*add\s+(.+?)\s*$", text, re.IGNORECASE):
            return None, {"name": "add_task", "arguments": {"title": match.group(1)}}
        return "Say “add …” and I will add it.", None


def _chunk(delta: dict[str, Any], finish: str | None) -> bytes:
    payload = {
        "id": "chatcmpl-console",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _handler(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            model.requests.append(body)
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            text, call = ScriptedModel.reply(body)
            if call is not None:
                tool_call = {
                    "index": 0,
                    "id": f"call_{len(model.requests)}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                deltas, finish = [{"role": "assistant", "tool_calls": [tool_call]}], "tool_calls"
            else:
                words = re.findall(r"\S+\s*", text or "")
                deltas = [{"role": "assistant", "content": words[0]}, *({"content": w} for w in words[1:])]
                finish = "stop"
            if body.get("stream"):
                payload = b"".join(_chunk(d, None) for d in deltas) + _chunk({}, finish) + b"data: [DONE]\n\n"
                content_type = "text/event-stream"
            else:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if call is not None:
                    message["tool_calls"] = [{k: v for k, v in tool_call.items() if k != "index"}]
                payload = json.dumps(
                    {
                        "id": "chatcmpl-console",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "scripted",
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    }
                ).encode()
                content_type = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ScriptedModel]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ScriptedModel(url="")))
    model = ScriptedModel(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    server.RequestHandlerClass = _handler(model)
    thread = threading.Thread(target=server.serve_forever, name="scripted-model", daemon=True)
    thread.start()
    try:
        yield model
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---- doable serve ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    base: str
    data_dir: Path
    log: Path

    def token(self, user: str) -> str:
        return mint(JWT_SECRET, user_id=user, issuer="doable", audience="doable", ttl_seconds=900)

    def client(self, user: str) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=10
        )


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, scripted_model: ScriptedModel) -> Iterator[Served]:
    """One `doable serve` for the console tests (each test uses users of its own)."""
    root = tmp_path_factory.mktemp("console")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOABLE_", "OPENAI_"))}
    env.update(
        {
            "DOABLE_DATA_DIR": str(root / "data"),
            "DOABLE_JWT_SECRET": JWT_SECRET,
            # A configured secret turns the password-less local sign-in off unless asked for.
            "DOABLE_CONSOLE_LOCAL_SIGNIN": "true",
            "DOABLE_LOG_FORMAT": "json",
            "OPENAI_BASE_URL": scripted_model.url,
            "DOABLE_MODEL": "scripted",
        }
    )
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "doable.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx2.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.05)  # a sync fixture polling a subprocess
        else:
            raise AssertionError(f"doable serve did not start:\n{log.read_text()}")
        yield Served(base, root / "data", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the browser ---------------------------------------------------------------------------------


@dataclass
class External:
    """Requests a page made to anything but the server under test (the console makes none)."""

    urls: list[str] = field(default_factory=list)


@pytest.fixture
def external() -> External:
    return External()


@pytest.fixture
async def context(browser: Any, served: Served, external: External) -> AsyncIterator[Any]:
    """A browser profile with notifications allowed, recording Notification calls and outside requests."""
    ctx = await browser.new_context(
        base_url=served.base,
        viewport={"width": 1280, "height": 800},
        locale="en-US",
        timezone_id="UTC",
        permissions=["notifications"],
    )
    await ctx.add_init_script(RECORD_NOTIFICATIONS)
    ctx.on("request", lambda r: None if r.url.startswith((served.base, "data:")) else external.urls.append(r.url))
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        await ctx.close()
