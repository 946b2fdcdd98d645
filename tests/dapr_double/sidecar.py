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


async def metadata(request: Request) -> Response:
    """https://docs.dapr.io/reference/api/metadata_api/"""
    core, app_id = sidecar_of(request)
    components: list[dict[str, Any]] = [
        {"name": name, "type": "state.postgresql", "version": "v1", "capabilities": ["ETAG", "TRANSACTIONAL", "TTL"]}
        for name in core.state_stores
    ]
    components += [{"name": name, "type": "pubsub.double", "version": "v1"} for name in sorted(core.pubsubs)]
    components += [{"name": name, "type": "secretstores.double", "version": "v1"} for name in core.secret_stores]
    channel = core.apps.get(app_id)
    return JSONResponse(
        {
            "id": app_id,
            "runtimeVersion": "dapr-double",
            "enabledFeatures": [],
            "actors": [],
            "components": components,
            "httpEndpoints": [],
            "subscriptions": [s.describe() for s in channel.subscriptions] if channel else [],
            "extended": {},
            "appConnectionProperties": {"protocol": "http"} if channel else {},
        }
    )


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
        *pubsub.ROUTES,
        *jobs_api.ROUTES,
        *secrets.ROUTES,
        *invoke.ROUTES,
        invoke.FALLBACK,
    ]
    app = Starlette(routes=routes, exception_handlers={DaprError: _dapr_error})
    app.state.core = core
    app.state.app_id = app_id
    return SidecarGate(app, core)
