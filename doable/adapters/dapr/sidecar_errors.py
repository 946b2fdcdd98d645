"""What a Dapr sidecar's answer means: an ETag conflict, a bulk publish's failed entries, a
path it does not serve, an outcome it cannot tell, or an error to raise (doable/adapters/dapr/client.py)."""

from __future__ import annotations

import re

import httpx2

from doable.domain.errors import Conflict, Unavailable


def is_etag_error(response: httpx2.Response) -> bool:
    """409, or the 500 a store gives when an ETag or create-only (first-write, no ETag) write
    matched no row: state.postgresql reports "no item was updated" for the latter."""
    if response.status_code == 409:
        return True
    if response.status_code == 500:
        text = response.text.lower()
        return "etag" in text or "no item was updated" in text
    return False


def _error_code(response: httpx2.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("errorCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def failed_entries(response: httpx2.Response) -> list[str]:
    """The entry ids of a bulk publish's `{"failedEntries": [{"entryId", "error"}], ...}` answer."""
    try:
        body = response.json()
    except ValueError:
        return []
    failed = body.get("failedEntries") if isinstance(body, dict) else None
    if not isinstance(failed, list):
        return []
    return [str(f["entryId"]) for f in failed if isinstance(f, dict) and isinstance(f.get("entryId"), str)]


def unserved_route(response: httpx2.Response) -> bool:
    """daprd hands a path it does not serve to its service-invocation fallback, which, with no
    `dapr-app-id` header, answers 404 ERR_DIRECT_INVOKE "failed getting app id either from the
    URL path or the header dapr-app-id" (`pkg/api/http/server.go` IsFallback,
    `pkg/api/http/directmessaging.go`, `pkg/messages/predefined.go` ErrDirectInvokeNoAppID)."""
    return response.status_code == 404 and _error_code(response) == "ERR_DIRECT_INVOKE"


# What daprd says when its resiliency timeout fired before the operation finished: the error
# wraps Go's `context.DeadlineExceeded` ("context deadline exceeded").
_DEADLINE = re.compile(r"deadline exceeded|context canceled|timeout", re.IGNORECASE)


def outcome_unknown(response: httpx2.Response) -> bool:
    return bool(_DEADLINE.search(response.text))


def raise_for(response: httpx2.Response) -> None:
    if response.status_code < 300:
        return
    if is_etag_error(response):
        raise Conflict("a concurrent change won; retry")
    if response.status_code in (401, 403):
        raise Unavailable("the Dapr sidecar refused this app (check the API token and scopes)")
    raise Unavailable(f"the Dapr sidecar answered {response.status_code}")
