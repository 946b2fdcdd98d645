"""Builds the API process's ASGI app: REST, MCP (streamable HTTP at /mcp), health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from doable import __version__
from doable.auth import service_tokens
from doable.oauth.wiring import oauth_setup
from doable.runtime import Runtime
from doable.web import errors
from doable.web.console import router as console_router
from doable.web.history import router as history_router
from doable.web.limits import AuthFailureLimit, BodyTimeout
from doable.web.live import router as live_router
from doable.web.middleware import BackendUnavailable, BodyLimit, OnlyPaths, RequestContext
from doable.web.notifications import router as notifications_router
from doable.web.tasks import router as tasks_router
from mcp_server.identity import McpTokenVerifier, from_http_token
from mcp_server.scopes import McpGuard, ToolScopes
from mcp_server.server import mcp_for_runtime


def public_url(runtime: Runtime) -> str:
    s = runtime.settings
    return (s.public_url or f"http://{'127.0.0.1' if s.host in ('0.0.0.0', '::') else s.host}:{s.port}").rstrip("/")


def _transport_security(runtime: Runtime) -> TransportSecuritySettings:
    hosts = runtime.settings.allowed_hosts
    if "*" in hosts:
        # Behind a load balancer the Host varies; the bearer token is the guard there.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=[])


def create_app(runtime: Runtime) -> FastAPI:
    """The API app for `runtime`. Build a new one per process or test (MCP's session manager runs once)."""
    base = public_url(runtime)
    # Short-lived tokens the chat agent mints to call the MCP tools as the signed-in user.
    chat_tokens = service_tokens(runtime.settings, runtime.signing_secret)
    # Which OAuth authorization server /mcp trusts (external, built-in, or none) and its metadata.
    oauth = oauth_setup(runtime.settings, base, sql_engine=runtime.sql_engine if runtime.settings.runtime == "embedded" else None)
    verifier = McpTokenVerifier(runtime.verifier, internal=chat_tokens.verifier, oauth=oauth.verifiers)
    # The bearer token and its scopes are checked by McpGuard in front of the MCP app (below).
    mcp = mcp_for_runtime(runtime, from_http_token)
    mcp_app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=_transport_security(runtime),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs; the MCP session manager must run here.
        async with mcp.session_manager.run():
            # Embedded mode: the outbox relay, job scheduler and workers run with the app.
            await runtime.start()
            try:
                yield
            finally:
                await runtime.stop()
                for close in oauth.closers:
                    await close()

    app = FastAPI(
        title="Doable",
        version=__version__,
        description="Tasks for people and their AI agents. Bearer JWT required on /api and /mcp.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    errors.install(app)
    app.include_router(tasks_router)
    app.include_router(notifications_router)
    app.include_router(live_router)
    app.include_router(history_router)
    if runtime.settings.runtime == "dapr":
        # The routes the sidecar calls (subscriptions, service invocation); never in embedded mode.
        from doable.dapr.routes import include_dapr_routes

        include_dapr_routes(app, runtime)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "A backend is unavailable"}})
    async def readyz(request: Request) -> JSONResponse:
        """Every backend this process needs is reachable."""
        checks = await request.app.state.runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # Imported here, not at module level: processes that never serve chat skip the chat stack.
    from agent.routes import build_chat_router

    app.include_router(build_chat_router(runtime, chat_tokens))

    # The web console at / and /console/... (before the MCP mount, which takes everything else).
    app.include_router(console_router)
    # OAuth: protected-resource metadata and, when built in, the authorization server and its consent page.
    app.router.routes.extend(oauth.routes)

    # Last, at the root: the MCP endpoint at /mcp, behind the guard that checks its bearer tokens and scopes.
    app.mount(
        "/",
        BackendUnavailable(
            OnlyPaths(
                McpGuard(
                    mcp_app,
                    verify=verifier.verify,
                    tool_scopes=ToolScopes(mcp.list_tools),
                    resource_metadata_url=oauth.resource_metadata_url,
                    max_body_bytes=runtime.settings.max_body_bytes,
                ),
                exact=("/mcp",),
                prefixes=("/mcp/", "/.well-known/"),
            )
        ),
    )
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(BodyTimeout, seconds=runtime.settings.request_timeout_seconds)
    app.add_middleware(AuthFailureLimit, per_minute=runtime.settings.auth_failures_per_minute)
    app.add_middleware(RequestContext)
    return app
