"""Builds the API process's ASGI app: REST, MCP (streamable HTTP at /mcp), health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from doable import __version__
from doable.domain.clock import Clock
from doable.platform.auth import ServiceTokens, TokenVerifier, service_tokens
from doable.platform.settings import Settings
from doable.usecases.history import History
from doable.usecases.inbox import Inbox
from doable.usecases.live import LiveHub
from doable.usecases.service import TaskService
from doable.web import errors
from doable.web.console import router as console_router
from doable.web.deps import WebDeps
from doable.web.history import router as history_router
from doable.web.limits import AuthFailureLimit, BodyTimeout
from doable.web.live import router as live_router
from doable.web.mcp_side import McpSide, McpSideMount
from doable.web.middleware import BodyLimit, RequestContext
from doable.web.notifications import router as notifications_router
from doable.web.tasks import router as tasks_router

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

    from agent.routes import ChatStoreFactory
    from doable.oauth.wiring import OAuthStoreFactory
    from mcp_server.server import DoableMcp


class ApiParts(Protocol):
    """What the API app is built from (the composition root's Runtime is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def service(self) -> TaskService: ...
    @property
    def verifier(self) -> TokenVerifier: ...
    @property
    def signing_secret(self) -> str | None: ...
    @property
    def inbox(self) -> Inbox: ...
    @property
    def history(self) -> History: ...
    @property
    def live(self) -> LiveHub: ...
    @property
    def standalone(self) -> bool: ...
    @property
    def chat_store(self) -> ChatStoreFactory: ...
    @property
    def oauth_store(self) -> OAuthStoreFactory | None: ...

    def api_routers(self) -> list[APIRouter]: ...
    async def readiness(self) -> dict[str, str]: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def public_url(settings: Settings) -> str:
    s = settings
    return (s.public_url or f"http://{'127.0.0.1' if s.host in ('0.0.0.0', '::') else s.host}:{s.port}").rstrip("/")


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = settings.allowed_hosts
    if "*" in hosts:
        # Behind a load balancer the Host varies; the bearer token is the guard there.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=[])


def _mcp(parts: ApiParts) -> DoableMcp:
    """The MCP tools over `parts`, for HTTP (the bearer token is checked in front of them, by
    McpGuard); `doable mcp` builds the same registry for stdio."""
    from mcp_server.identity import from_http_token
    from mcp_server.server import build_mcp, request_state_security

    settings = parts.settings
    shared = settings.internal_token_secret.get_secret_value() if settings.internal_token_secret else None
    return build_mcp(
        parts.service,
        from_http_token,
        inbox=parts.inbox,
        history=parts.history,
        request_state=request_state_security(
            [key.get_secret_value() for key in settings.mcp_request_state_keys],
            shared or parts.signing_secret,
            replicated=not parts.standalone,
        ),
    )


def _web_deps(parts: ApiParts) -> WebDeps:
    return WebDeps(
        settings=parts.settings,
        service=parts.service,
        verifier=parts.verifier,
        inbox=parts.inbox,
        history=parts.history,
        live=parts.live,
        signing_secret=parts.signing_secret,
        standalone=parts.standalone,
    )


def _health_routes(app: FastAPI, parts: ApiParts) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "A backend is unavailable"}})
    async def readyz() -> JSONResponse:
        """Every backend this process needs is reachable."""
        checks = await parts.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _chat_router(parts: ApiParts, tokens: ServiceTokens, *, after: asyncio.Event | None) -> APIRouter:
    # The one seam from the core to the chat agent (agent.routes imports the chat stack itself,
    # when the app starts, or once `after` is set).
    from agent.routes import build_chat_router

    return build_chat_router(
        parts.settings,
        service=parts.service,
        clock=parts.clock,
        store=parts.chat_store,
        tokens=tokens,
        load_after=after,
    )


def _mcp_side(parts: ApiParts, chat_tokens: ServiceTokens) -> McpSide:
    """Everything that imports the MCP SDK: the OAuth routes (metadata, and the built-in
    authorization server) and, after them, /mcp behind the guard that checks its bearer tokens."""
    from starlette.routing import Mount, Router

    from doable.oauth.wiring import oauth_setup
    from doable.web.middleware import BackendUnavailable, OnlyPaths
    from mcp_server.identity import McpTokenVerifier
    from mcp_server.scopes import McpGuard, ToolScopes

    settings = parts.settings
    # Which OAuth authorization server /mcp trusts (external, built-in, or none) and its metadata.
    oauth = oauth_setup(settings, public_url(settings), store=parts.oauth_store)
    verifier = McpTokenVerifier(parts.verifier, internal=chat_tokens.verifier, oauth=oauth.verifiers)
    mcp = _mcp(parts)
    mcp_app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=_transport_security(settings),
    )
    guard = McpGuard(
        mcp_app,
        verify=verifier.verify,
        tool_scopes=ToolScopes(mcp.list_tools),
        resource_metadata_url=oauth.resource_metadata_url,
        max_body_bytes=settings.max_body_bytes,
    )
    only_mcp = BackendUnavailable(OnlyPaths(guard, exact=("/mcp",), prefixes=("/mcp/", "/.well-known/")))
    return McpSide(
        app=Router([*oauth.routes, Mount("/", only_mcp)]), session_manager=mcp.session_manager, closers=oauth.closers
    )


def create_app(parts: ApiParts, *, deferred_until: asyncio.Event | None = None) -> FastAPI:
    """The API app over `parts`. Build a new one per process or test (MCP's session manager runs once).
    `deferred_until`: build the chat server, /mcp and OAuth in the background once it is set
    (`doable serve`: once the server listens; their imports were most of a cold start), not at
    start-up; a request for them that comes first waits."""
    settings = parts.settings
    # Short-lived tokens the chat agent mints to call the MCP tools as the signed-in user.
    chat_tokens = service_tokens(settings, parts.signing_secret)
    mcp_side = McpSideMount(lambda: _mcp_side(parts, chat_tokens), after=deferred_until)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs; the MCP session manager must run here.
        async with mcp_side.running():
            # The adapter family's background work (embedded: relay, job scheduler, workers).
            await parts.start()
            try:
                yield
            finally:
                await parts.stop()

    app = FastAPI(
        title="Doable",
        version=__version__,
        description="Tasks for people and their AI agents. Bearer JWT required on /api and /mcp.",
        lifespan=lifespan,
    )
    app.state.deps = _web_deps(parts)
    errors.install(app)
    for router in (tasks_router, notifications_router, live_router, history_router):
        app.include_router(router)
    # The adapter family's own routes (Dapr: the routes the sidecar calls).
    for router in parts.api_routers():
        app.include_router(router)
    _health_routes(app, parts)
    app.include_router(_chat_router(parts, chat_tokens, after=deferred_until))
    # The web console at / and /console/... (before the MCP side, which takes everything else).
    app.include_router(console_router)
    # Last, at the root: OAuth (protected-resource metadata and, when built in, the authorization
    # server and its consent page), then the MCP endpoint at /mcp.
    app.mount("/", mcp_side)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyTimeout, seconds=settings.request_timeout_seconds)
    app.add_middleware(AuthFailureLimit, per_minute=settings.auth_failures_per_minute)
    app.add_middleware(RequestContext)
    return app
