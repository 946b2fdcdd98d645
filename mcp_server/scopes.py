"""The scope each MCP request needs, and the guard in front of the MCP endpoint that checks the
bearer token and those scopes before the SDK sees the request.

A tool annotated read-only (`readOnlyHint` on the wire) needs `tasks:read`; every other tool, and any tool
the table does not know, needs `tasks:write`. Everything else a client sends (initialize,
tools/list, resources, prompts) needs `tasks:read`. The tools' own annotations are the table, so
a new tool is guarded the day it is added.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from doable.oauth import scopes
from doable.oauth.challenge import bearer_challenge
from doable.platform.auth import InvalidToken
from doable.platform.logs import bind

log = structlog.get_logger("doable.mcp.auth")

ListTools = Callable[[], Awaitable[list[Any]]]


class ToolScopes:
    """What a JSON-RPC body sent to /mcp needs, from the tools' read-only annotations."""

    def __init__(self, list_tools: ListTools) -> None:
        self._list_tools = list_tools
        self._read_only: frozenset[str] | None = None

    async def _read_only_tools(self) -> frozenset[str]:
        if self._read_only is None:
            self._read_only = frozenset(
                t.name for t in await self._list_tools() if t.annotations is not None and t.annotations.read_only_hint
            )
        return self._read_only

    async def needed(self, body: bytes) -> set[str]:
        """The scopes the request(s) in `body` need (a batch needs what each of its members needs)."""
        needed = {scopes.READ}
        try:
            message = json.loads(body) if body else None
        except ValueError:
            return needed  # not JSON: the SDK answers it, and reading is the least it could do
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict) and item.get("method") == "tools/call":
                params = item.get("params")
                name = params.get("name") if isinstance(params, dict) else None
                if name not in await self._read_only_tools():
                    needed.add(scopes.WRITE)
        return needed


TokenCheck = Callable[[str], Awaitable[AccessToken]]


class McpGuard:
    """Pure ASGI in front of the MCP app: 401 with a challenge naming the resource metadata and
    the scopes for a missing or bad token, 403 `insufficient_scope` naming the missing scopes,
    otherwise the verified token in the SDK's auth context (tools read the user from it)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verify: TokenCheck,
        tool_scopes: ToolScopes,
        resource_metadata_url: str | None,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self._verify = verify
        self._tool_scopes = tool_scopes
        self._metadata = resource_metadata_url
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] == "/mcp" or scope["path"].startswith("/mcp/")):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await self._refuse(send, 401, None, "bearer token required", " ".join(scopes.SUPPORTED))
            return
        try:
            access = await self._verify(token)
        except InvalidToken as exc:
            await self._refuse(send, 401, "invalid_token", str(exc), " ".join(scopes.SUPPORTED))
            return
        body, receive = await _buffered(receive, self._max_body) if scope["method"] == "POST" else (b"", receive)
        if lacking := scopes.missing(await self._tool_scopes.needed(body), access.scopes):
            log.info("mcp.insufficient_scope", client_id=access.client_id, missing=lacking)
            await self._refuse(send, 403, "insufficient_scope", f"this request needs {' '.join(lacking)}", " ".join(lacking))
            return
        user = AuthenticatedUser(access)
        scope = {**scope, "user": user, "auth": AuthCredentials(access.scopes)}
        if access.subject:
            bind(user_id=access.subject)
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)

    async def _refuse(self, send: Send, status: int, error: str | None, description: str, scope: str) -> None:
        # RFC 6750 3.1: a request without credentials gets neither an error code nor its description.
        header = bearer_challenge(
            error=error, description=description if error else None, scope=scope, resource_metadata=self._metadata
        )
        body = json.dumps({"error": error or "unauthorized", "error_description": description}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", header.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _buffered(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """The request body (at most `limit` bytes are kept; the body limit middleware in front
    refuses more), and a `receive` that replays it to the app."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            pending: list[Message] = [message]
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        if not message.get("more_body", False):
            pending = []
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        if pending:
            return pending.pop()
        return await receive()

    return body, replay
