"""HTTP routes of the secrets API, served from an in-memory map `{store: {name: {key: value}}}`.

Reference: https://docs.dapr.io/reference/api/secrets_api/ . The reference lists 204
for "secret not found" and 400 for a missing store, but daprd answers differently
and the double follows daprd: an unknown store is 401 ERR_SECRET_STORE_NOT_FOUND
(dapr/dapr `pkg/messages/predefined.go`), no secret stores at all is 500
ERR_SECRET_STORES_NOT_CONFIGURED, and an unknown secret is the store's error
(local file and Kubernetes stores fail with "secret ... not found"), i.e. 500
ERR_SECRET_GET.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .core import sidecar_of
from .errors import DaprError


def _store(request: Request) -> tuple[str, Mapping[str, Mapping[str, str]]]:
    core, _ = sidecar_of(request)
    name = request.path_params["store"]
    if not core.secret_stores:
        raise DaprError(500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")
    if name not in core.secret_stores:
        raise DaprError(401, "ERR_SECRET_STORE_NOT_FOUND", f"failed finding secret store with key {name}")
    return name, core.secret_stores[name]


async def get_secret(request: Request) -> Response:
    store_name, store = _store(request)
    name = request.path_params["name"]
    if name not in store:
        raise DaprError(
            500,
            "ERR_SECRET_GET",
            f"failed getting secret with key {name} from secret store {store_name}: secret {name} not found",
        )
    return JSONResponse(dict(store[name]))


async def get_bulk_secrets(request: Request) -> Response:
    _, store = _store(request)
    return JSONResponse({name: dict(values) for name, values in store.items()})


ROUTES = [
    Route("/v1.0/secrets/{store}/bulk", get_bulk_secrets, methods=["GET"]),
    Route("/v1.0/secrets/{store}/{name}", get_secret, methods=["GET"]),
]
