"""Service invocation: `/v1.0/invoke/{app-id}/method/{method}` and the `dapr-app-id` header form.

Reference: https://docs.dapr.io/reference/api/service_invocation_api/ and
https://docs.dapr.io/developing-applications/building-blocks/service-invocation/howto-invoke-discover-services/ .
The call is forwarded with its verb, query string, body and headers; daprd adds
`dapr-caller-app-id` and `dapr-callee-app-id` (and `dapr-caller-namespace`), strips
the caller's `dapr-api-token` and `dapr-app-id`, and the callee's sidecar adds the
callee's app token (dapr/dapr `pkg/messaging/direct_messaging.go`,
`pkg/api/http/middlewares.go`). The app's status, headers and body come back
unchanged; an unknown or unreachable app id is 500 ERR_DIRECT_INVOKE.

Resiliency and access control follow dapr/dapr at v1.16.19-v1.18.3:
* `pkg/api/http/directmessaging.go` onDirectMessage: the caller's sidecar runs the call under
  `EndpointPolicy(target, "<target>:<method>")` (`apps` target or DefaultAppRetryPolicy...); an
  app answer outside 200-399 becomes a `resiliency.CodeError`, retried only if the retry's
  `matching.httpStatusCodes` allows the status (every status without matching), and is finally
  answered with the app's own status, headers and body; any other failure (a transport error, an
  access-control denial) is retried regardless of `matching`. Policy errors (open breaker,
  timeout) answer 500 ERR_DIRECT_INVOKE "failed to invoke, id: <target>, err: <error>".
* `pkg/messaging/direct_messaging.go`: the method is normalised (NormalizeMethod, path.Clean);
  a call to one's own app id is local (no ACL); DaprBuiltInServiceRetries (3 x 1 s, only with no
  app policy) covers transport errors between sidecars, which the double never has.
* the callee applies the Configuration's access control (see acl.py) and answers PermissionDenied;
  the caller turns it into 403 ERR_DIRECT_INVOKE "failed to invoke, id: <target>, err: rpc
  error: code = PermissionDenied desc = access control policy has denied access to ...".
"""

from __future__ import annotations

import posixpath

import httpx2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .cloudevents import child_traceparent
from .core import DoubleCore, sidecar_of
from .errors import DaprError
from .resiliency import CodeError

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


class _CallFailed(Exception):
    """invokeError: a failure before the app answered (status 500, or 403 for PermissionDenied)."""

    def __init__(self, status: int, error: DaprError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


def normalize_method(method: str) -> str:
    """method.NormalizeMethod: path.Clean, leading "../" stripped, "." -> ""."""
    if any(ch in method for ch in "#?\x00") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in method):
        raise DaprError(400, "ERR_DIRECT_INVOKE", f"invalid method: method contains forbidden character: {method!r}")
    cleaned = posixpath.normpath(method) if method else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    while cleaned.startswith("../"):
        cleaned = cleaned[3:]
    return "" if cleaned in (".", "..") else cleaned


def _acl_denial(core: DoubleCore, caller: str, target: str, method: str, verb: str) -> str | None:
    config = core.configuration
    if caller == target or config is None or config.access_control is None:
        return None
    return config.access_control.check(
        caller=caller,
        namespace=core.effective_namespace or "default",
        trust_domain=config.trust_domain,
        operation=method,
        verb=verb,
    )


async def forward(core: DoubleCore, caller: str, target: str, method: str, request: Request) -> Response:
    """Forward `request` to app `target` as a call to `method`, on behalf of app `caller`."""
    method = normalize_method(method)
    channel = core.apps.get(target)
    if channel is None:
        raise _invoke_error(target, f"couldn't find service: {target}")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    headers["dapr-caller-app-id"] = caller
    headers["dapr-callee-app-id"] = target
    namespace = core.effective_namespace
    if namespace:
        headers["dapr-caller-namespace"] = namespace
    headers["traceparent"] = child_traceparent(request.headers.get("traceparent"))
    body = await request.body()
    verb = request.method.upper()

    async def call() -> httpx2.Response:
        denial = _acl_denial(core, caller, target, method, verb)
        if denial is not None:
            raise _CallFailed(403, _invoke_error(target, f"rpc error: code = PermissionDenied desc = {denial}"))
        try:
            answer = await channel.request(
                request.method, method, content=body, headers=headers, params=request.url.query
            )
        except httpx2.TransportError as exc:
            raise _CallFailed(500, _invoke_error(target, str(exc) or type(exc).__name__)) from exc
        if not 200 <= answer.status_code <= 399:
            raise CodeError(answer.status_code, answer)
        return answer

    policy = core.resiliency.app_target(caller, target, method)
    try:
        answer = await (policy.run(call) if policy is not None else call())
    except CodeError as exc:
        answer = exc.payload  # the app's own answer, after the retries `matching` allowed
    except _CallFailed as exc:
        raise DaprError(exc.status, exc.error.error_code, exc.error.message) from exc
    except Exception as exc:  # open breaker, timeout
        raise _invoke_error(target, str(exc)) from exc
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
