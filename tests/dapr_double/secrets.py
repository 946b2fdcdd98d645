"""HTTP routes of the secrets API, served from an in-memory map `{store: {name: {key: value}}}`.

Reference: https://docs.dapr.io/reference/api/secrets_api/ . The reference lists 204
for "secret not found" and 400 for a missing store, but daprd answers differently
and the double follows daprd (dapr/dapr `pkg/messages/predefined.go`,
`pkg/api/universal/secrets.go`, the same at v1.16.19, v1.17.13 and v1.18.3):
* no secret store loaded at all: 500 ERR_SECRET_STORES_NOT_CONFIGURED;
* a store the sidecar did not load (unknown, or scoped to other app ids): 401
  ERR_SECRET_STORE_NOT_FOUND;
* a secret the Configuration's `secrets.scopes` deny (`pkg/config/configuration.go`
  IsSecretAllowed): 403 ERR_PERMISSION_DENIED `access denied by policy to get "<key>" from
  "<store>"`; the bulk call silently leaves denied secrets out;
* an unknown secret: the store's error (local file and Kubernetes stores fail with
  "secret ... not found"), i.e. 500 ERR_SECRET_GET.
With manifests, the stores are the `secretstores.*` Components scoped to the app id, plus the
built-in "kubernetes" store daprd registers in Kubernetes mode (`pkg/runtime/runtime.go`,
`pkg/components/secretstores/registry.go` BuiltinKubernetesSecretStore); the data comes from
the double's `secrets` argument.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .core import DoubleCore, sidecar_of
from .errors import DaprError

BUILTIN_KUBERNETES_STORE = "kubernetes"


def loaded_stores(core: DoubleCore, app_id: str) -> list[str]:
    """The secret stores `app_id`'s sidecar loaded."""
    names = core.component_names(app_id, "secretstores")
    if core.manifests is not None and core.effective_namespace and BUILTIN_KUBERNETES_STORE not in names:
        names.append(BUILTIN_KUBERNETES_STORE)
    return names


def _store(request: Request) -> tuple[DoubleCore, str, Mapping[str, Mapping[str, str]]]:
    core, app_id = sidecar_of(request)
    name = request.path_params["store"]
    stores = loaded_stores(core, app_id)
    if not stores:
        raise DaprError(500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")
    if name not in stores:
        raise DaprError(401, "ERR_SECRET_STORE_NOT_FOUND", f"failed finding secret store with key {name}")
    return core, name, core.secret_stores.get(name, {})


def _allowed(core: DoubleCore, store: str, key: str) -> bool:
    config = core.configuration
    return config is None or config.secret_allowed(store, key)


async def get_secret(request: Request) -> Response:
    core, store_name, store = _store(request)
    name = request.path_params["name"]
    if not _allowed(core, store_name, name):
        raise DaprError(403, "ERR_PERMISSION_DENIED", f'access denied by policy to get "{name}" from "{store_name}"')
    if name not in store:
        raise DaprError(
            500,
            "ERR_SECRET_GET",
            f"failed getting secret with key {name} from secret store {store_name}: secret {name} not found",
        )
    return JSONResponse(dict(store[name]))


async def get_bulk_secrets(request: Request) -> Response:
    core, store_name, store = _store(request)
    return JSONResponse({name: dict(values) for name, values in store.items() if _allowed(core, store_name, name)})


ROUTES = [
    Route("/v1.0/secrets/{store}/bulk", get_bulk_secrets, methods=["GET"]),
    Route("/v1.0/secrets/{store}/{name}", get_secret, methods=["GET"]),
]
