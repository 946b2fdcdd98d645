"""scripts/smoke_test.py against a stand-in Doable on localhost.

The stand-in serves /healthz, /readyz, an MCP endpoint with add_task/list_tasks
(the official SDK's server) and /api/notifications, and insists on the bearer
token, so the script's whole conversation is exercised without a cluster.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("smoke_test", REPO / "scripts" / "smoke_test.py")
assert _spec is not None and _spec.loader is not None
smoke_test = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke_test)

TOKEN = "smoke-token"


def _stand_in(deliver_notifications: bool) -> Any:
    tasks: list[dict[str, Any]] = []
    mcp = MCPServer("doable-stand-in")

    @mcp.tool()
    def add_task(title: str, due: str | None = None, reminders: list[dict[str, str]] | None = None) -> dict[str, Any]:
        task = {"id": len(tasks) + 1, "title": title, "due": due, "reminders": reminders or []}
        tasks.append(task)
        return {"task_id": task["id"], "status": "created", "title": title}

    @mcp.tool()
    def list_tasks(status: str = "all") -> dict[str, Any]:
        return {"tasks": [{"id": t["id"], "title": t["title"], "completed": False} for t in tasks]}

    mcp_app = mcp.streamable_http_app(
        streamable_http_path="/",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def ok(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def notifications(request: Request) -> Response:
        if not deliver_notifications:
            return JSONResponse([])
        return JSONResponse([{"task_id": t["id"], "title": t["title"], "kind": "reminder"} for t in tasks])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with mcp.session_manager.run():
            yield

    app = Starlette(
        routes=[
            Route("/healthz", ok),
            Route("/readyz", ok),
            Route("/api/notifications", notifications),
            Mount("/mcp", app=mcp_app),
        ],
        lifespan=lifespan,
    )

    async def bearer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("/mcp", "/api")):
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
                await JSONResponse({"detail": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    return bearer


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("stand-in server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_smoke_script_passes_against_a_working_deployment(capsys: pytest.CaptureFixture[str]) -> None:
    with _serve(_stand_in(deliver_notifications=True)) as url:
        status = smoke_test.main(["--base-url", url, "--token", TOKEN, "--remind-in", "1", "--timeout", "10"])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "MCP add_task" in out.out and "MCP list_tasks" in out.out and "reminder delivered" in out.out


def test_smoke_script_fails_when_no_reminder_arrives(capsys: pytest.CaptureFixture[str]) -> None:
    with _serve(_stand_in(deliver_notifications=False)) as url:
        status = smoke_test.main(["--base-url", url, "--token", TOKEN, "--remind-in", "1", "--timeout", "2"])
    assert status == 1
    assert "no notification for task" in capsys.readouterr().err


def test_smoke_script_fails_with_a_wrong_token(capsys: pytest.CaptureFixture[str]) -> None:
    with _serve(_stand_in(deliver_notifications=True)) as url:
        status = smoke_test.main(["--base-url", url, "--token", "wrong", "--timeout", "2"])
    assert status == 1
    assert "FAIL" in capsys.readouterr().err
