"""The ASGI app of one sidecar (one app id), plus health and metadata routes.

Every sidecar of a double shares the same core: state store, broker and scheduler.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import invoke, jobs_api, pubsub, secrets, state_api
from .core import DoubleCore, sidecar_of
from .errors import DaprError

API_TOKEN_HEADER = b"dapr-api-token"
# daprd lets health probes through without the API token (pkg/api/http/middlewares.go,
# https://docs.dapr.io/operations/security/api-token/).
_TOKEN_EXEMPT = {("GET", "/v1.0/healthz"), ("GET", "/v1.0/healthz/outbound")}


class SidecarGate:
    """ASGI middleware for the fault switches and API-token authentication."""

    def __init__(self, app: ASGIApp, core: DoubleCore) -> None:
        self._app = app
        self._core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        faults = self._core.faults
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        if faults.down:
            await PlainTextResponse("dapr sidecar double is down", status_code=500)(scope, receive, send)
            return
        token = self._core.api_token
        exempt = (scope["method"], scope["path"].rstrip("/")) in _TOKEN_EXEMPT
        if token and not exempt:
            sent = dict(scope["headers"]).get(API_TOKEN_HEADER, b"").decode("latin-1")
            if sent != token:
                # https://docs.dapr.io/operations/security/api-token/ : 401 without a valid token.
                await PlainTextResponse("invalid api token", status_code=401)(scope, receive, send)
                return
        await self._app(scope, receive, send)


async def healthz(request: Request) -> Response:
    """https://docs.dapr.io/reference/api/health_api/ : 204 when healthy."""
    return Response(status_code=204)


# Capabilities daprd reports for the components the double implements (state.postgresql v1
# Features(): ETAG, TRANSACTIONAL, TTL, QUERY_API; pubsub.kafka: none reported over HTTP).
_CAPABILITIES = {"state": ["ETAG", "TRANSACTIONAL", "TTL"]}


def _components(core: DoubleCore, app_id: str) -> list[dict[str, Any]]:
    if core.manifests is not None:
        loaded = [(c.name, c.type, c.version, c.kind) for c in core.manifests.components_for(app_id)]
    else:
        loaded = [(n, "state.postgresql", "v1", "state") for n in core.state_stores]
        loaded += [(n, "pubsub.kafka", "v1", "pubsub") for n in sorted(core.pubsubs)]
        loaded += [(n, "secretstores.local.file", "v1", "secretstores") for n in core.secret_stores]
    return [
        {"name": name, "type": type_, "version": version}
        | ({"capabilities": _CAPABILITIES[kind]} if kind in _CAPABILITIES else {})
        for name, type_, version, kind in loaded
    ]


async def metadata(request: Request) -> Response:
    """GET /v1.0/metadata (pkg/api/http/metadata.go, pkg/api/universal/metadata.go at the tag):
    `runtimeVersion` and `extended.daprRuntimeVersion` are the release ("1.17.13"); empty
    lists are left out (omitempty); 1.18 adds `resiliencies`."""
    core, app_id = sidecar_of(request)
    channel = core.apps.get(app_id)
    body: dict[str, Any] = {
        "id": app_id,
        "runtimeVersion": core.version.tag,
        "components": _components(core, app_id),
        "extended": {"daprRuntimeVersion": core.version.tag},
    }
    if channel is not None:
        subscriptions = [s.describe() for s in channel.subscriptions]
        if subscriptions:
            body["subscriptions"] = subscriptions
        body["appConnectionProperties"] = {"protocol": "http"}
    if core.version.metadata_lists_resiliencies:
        names = core.resiliency.loaded(app_id)
        if names:
            body["resiliencies"] = [{"name": n} for n in names]
    return JSONResponse(body)


async def _dapr_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DaprError)
    return exc.to_response()


def build_sidecar(core: DoubleCore, app_id: str) -> ASGIApp:
    """An ASGI app answering the Dapr HTTP API on behalf of `app_id`."""
    routes = [
        Route("/v1.0/healthz", healthz, methods=["GET"]),
        Route("/v1.0/healthz/outbound", healthz, methods=["GET"]),
        Route("/v1.0/metadata", metadata, methods=["GET"]),
        *state_api.ROUTES,
        *pubsub.routes(core.version),
        *jobs_api.routes(core.version),
        *secrets.ROUTES,
        *invoke.ROUTES,
        invoke.FALLBACK,
    ]
    app = Starlette(routes=routes, exception_handlers={DaprError: _dapr_error})
    app.state.core = core
    app.state.app_id = app_id
    return SidecarGate(app, core)
