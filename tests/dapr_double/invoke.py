"""Service invocation: `/v1.0/invoke/{app-id}/method/{method}` and the `dapr-app-id` header form.

Reference: https://docs.dapr.io/reference/api/service_invocation_api/ and
https://docs.dapr.io/developing-applications/building-blocks/service-invocation/howto-invoke-discover-services/ .
The call is forwarded with its verb, query string, body and headers; daprd adds
`dapr-caller-app-id` and `dapr-callee-app-id` (and `dapr-caller-namespace`), strips
the caller's `dapr-api-token` and `dapr-app-id`, and the callee's sidecar adds the
callee's app token (dapr/dapr `pkg/messaging/direct_messaging.go`,
`pkg/api/http/middlewares.go`). The app's status, headers and body come back
unchanged; an unknown or unreachable app id is 500 ERR_DIRECT_INVOKE.
"""

from __future__ import annotations

import httpx2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .cloudevents import child_traceparent
from .core import DoubleCore, sidecar_of
from .errors import DaprError

_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "dapr-api-token",
        "dapr-app-id",
        "dapr-caller-app-id",
        "dapr-callee-app-id",
        "dapr-caller-namespace",
        "traceparent",
    }
)
_NOT_RETURNED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def _invoke_error(target: str, detail: str) -> DaprError:
    return DaprError(500, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {target}, err: {detail}")


async def forward(core: DoubleCore, caller: str, target: str, method: str, request: Request) -> Response:
    """Forward `request` to app `target` as a call to `method`, on behalf of app `caller`."""
    channel = core.apps.get(target)
    if channel is None:
        raise _invoke_error(target, f"couldn't find service: {target}")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    headers["dapr-caller-app-id"] = caller
    headers["dapr-callee-app-id"] = target
    if core.namespace:
        headers["dapr-caller-namespace"] = core.namespace
    headers["traceparent"] = child_traceparent(request.headers.get("traceparent"))
    try:
        answer = await channel.request(
            request.method, method, content=await request.body(), headers=headers, params=request.url.query
        )
    except httpx2.TransportError as exc:
        raise _invoke_error(target, str(exc) or type(exc).__name__) from exc
    response = Response(answer.content, status_code=answer.status_code)
    response.raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in answer.headers.multi_items()
        if k.lower() not in _NOT_RETURNED
    ] + [(b"content-length", str(len(answer.content)).encode())]
    return response


async def invoke(request: Request) -> Response:
    core, caller = sidecar_of(request)
    return await forward(core, caller, request.path_params["app_id"], request.path_params["method"], request)


async def invoke_by_header(request: Request) -> Response:
    """Fallback for unmatched paths: `dapr-app-id: <id>` turns any path into an invocation."""
    core, caller = sidecar_of(request)
    target = request.headers.get("dapr-app-id")
    if not target:
        raise DaprError(
            404, "ERR_DIRECT_INVOKE", "failed getting app id either from the URL path or the header dapr-app-id"
        )
    return await forward(core, caller, target, request.path_params["path"], request)


ROUTES = [Route("/v1.0/invoke/{app_id}/method/{method:path}", invoke, methods=ALL_METHODS)]
FALLBACK = Route("/{path:path}", invoke_by_header, methods=ALL_METHODS)
