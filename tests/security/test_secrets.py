"""Secrets never appear in logs, error messages or /readyz.

Two nets: `structlog.testing.capture_logs()` around an in-process app (every event as logged,
before any redaction), and the JSON log of a real `doable serve` (stderr, tracebacks rendered).
Both runs hold the JWT secret, the chat model's API key (a provider on loopback that echoes it
back in its error, as some do), the internal token secret, Dapr's API and app tokens, a webhook's
signing secret, and users' bearer tokens (good and bad ones, in headers and in `?access_token=`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
import structlog
from pydantic import SecretStr

from doable.bootstrap import build
from doable.platform.auth import mint
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.chat.conftest import text_input
from tests.conftest import JWT_SECRET, auth, lifespan_running
from tests.reliability.processes import Server, server

OPENAI_KEY = "sk-live-" + "K" * 40
INTERNAL_SECRET = "internal-secret-" + "I" * 30
APP_TOKEN = "app-token-" + "A" * 30
DAPR_TOKEN = "dapr-token-" + "D" * 30
SERVE_JWT_SECRET = "serve-jwt-secret-" + "S" * 40
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


class Provider(BaseHTTPRequestHandler):
    """A model provider that refuses the key and quotes it back in full."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        key = self.headers.get("authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}})
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def assert_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{where} contains a secret ({secret[:12]}...)"
    found = JWT_PATTERN.findall(text)
    assert not found, f"{where} contains a bearer token: {found[0][:20]}..."


async def exercise(http: httpx2.AsyncClient, token: str) -> list[str]:
    """Requests that touch every secret: good and bad tokens everywhere, a chat turn the provider
    refuses, a webhook (its secret) and its failing deliveries. Returns every response body."""
    bodies: list[str] = []
    bad = mint("not-the-secret-" + "x" * 30, user_id="alice", issuer="doable", audience="doable", ttl_seconds=60)
    for t in (token, bad, token + "x", "Bearer " + token):
        h = auth(t)
        for method, path, body in (
            ("GET", "/api/tasks", None),
            ("POST", "/api/tasks", {"title": "t", "due": "2026-12-01T09:00", "reminders": [{"minutes_before": 5}]}),
            ("GET", "/api/tasks/999", None),
            ("POST", "/api/tasks", {"title": ""}),
            ("PUT", "/api/webhook", {"url": "http://127.0.0.1:9/hook"}),
            ("GET", "/api/webhook", None),
            ("PUT", "/api/profile", {"timezone": "Mars/Base"}),
            ("POST", "/api/alice/chat", {"message": "hello"}),
            ("GET", f"/api/notifications/stream?access_token={bad}", None),
            ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}}),
        ):
            headers = {**h, "accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
            if "access_token" in path:
                headers = {}  # the token rides in the query only (a stream with a good one never ends)
            response = await http.request(method, path, json=body, headers=headers)
            bodies.append(f"{method} {path.split('?')[0]} {response.status_code} {dict(response.headers)} {response.text}")
        chat = {"type": "threads.create", "params": {"input": text_input("add milk")}, "metadata": {}}
        response = await http.post("/chatkit", content=json.dumps(chat), headers={**h, "content-type": "application/json"})
        bodies.append(response.text)
    for path in ("/readyz", "/healthz", "/api/console/config", "/openapi.json", "/.well-known/oauth-protected-resource/mcp"):
        response = await http.get(path)
        bodies.append(f"{path} {response.text}")
    return bodies


async def test_logs_errors_and_readiness_hold_no_secret_in_process(settings: Settings, provider: str) -> None:
    configured = settings.model_copy(
        update={
            "openai_api_key": SecretStr(OPENAI_KEY),
            "openai_base_url": provider,
            "model_api": "chat_completions",
            "internal_token_secret": SecretStr(INTERNAL_SECRET),
            "app_api_token": SecretStr(APP_TOKEN),
            "dapr_api_token": SecretStr(DAPR_TOKEN),
            "webhook_allow_private": True,
            "webhook_retry_seconds": 0.01,
        }
    )
    token = mint(JWT_SECRET, user_id="alice", issuer="doable", audience="doable", ttl_seconds=600)
    with structlog.testing.capture_logs() as captured:
        runtime = await build(configured)
        try:
            app = create_app(runtime)
            async with lifespan_running(app):
                transport = httpx2.ASGITransport(app=app)
                async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as http:
                    bodies = await exercise(http, token)
                    webhook = (await http.put("/api/webhook", json={"url": "http://127.0.0.1:9/x"}, headers=auth(token))).json()
                    assert runtime.delivery is not None
                    await runtime.delivery.settle()
        finally:
            await runtime.aclose()
    secrets = [JWT_SECRET, OPENAI_KEY, INTERNAL_SECRET, APP_TOKEN, DAPR_TOKEN, webhook["secret"], token]
    assert captured, "nothing was logged"
    for event in captured:
        assert_no_secret(repr(event), secrets, f"log event {event.get('event')!r}")
    for body in bodies:
        # The webhook's own response shows its secret once, by design; that answer is not an error.
        assert_no_secret(body.replace(webhook["secret"], ""), [s for s in secrets if s != webhook["secret"]], body[:80])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, provider: str) -> Iterator[Server]:
    srv = server(
        tmp_path_factory.mktemp("secrets"),
        DOABLE_JWT_SECRET=SERVE_JWT_SECRET,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=provider,
        DOABLE_INTERNAL_TOKEN_SECRET=INTERNAL_SECRET,
        APP_API_TOKEN=APP_TOKEN,
        DAPR_API_TOKEN=DAPR_TOKEN,
        DOABLE_WEBHOOK_ALLOW_PRIVATE="true",
        DOABLE_LOG_LEVEL="debug",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_a_real_serve_logs_no_secret_in_its_json_stderr(served: Server) -> None:
    token = served.token("alice")
    async with httpx2.AsyncClient(base_url=served.base, timeout=30) as http:
        bodies = await exercise(http, token)
        webhook = (await http.put("/api/webhook", json={"url": "http://127.0.0.1:9/x"}, headers=auth(token))).json()
    served.stop()
    log = served.log()
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert len(lines) > 20, log[-2000:]
    for line in lines:
        json.loads(line)  # every line is JSON (no stray tracebacks or prints between them)
    secrets = [SERVE_JWT_SECRET, OPENAI_KEY, INTERNAL_SECRET, APP_TOKEN, DAPR_TOKEN, webhook["secret"], token]
    for line in lines:
        assert_no_secret(line, secrets, f"doable serve's log line {line[:300]}")
    for body in bodies:
        assert_no_secret(body.replace(webhook["secret"], ""), [s for s in secrets if s != webhook["secret"]], body[:80])
