"""Which authorization server /mcp trusts, built once per app: the external one named by
DOABLE_OAUTH_ISSUER, or the built-in one (when the composition root hands over a store for it:
embedded mode), or none (Dapr mode without an external server: only Doable's own tokens). Also
the metadata documents clients discover them by."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from mcp.server.auth.handlers.metadata import MetadataHandler, ProtectedResourceMetadataHandler
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from doable.oauth import scopes
from doable.oauth.client_documents import ClientDocuments
from doable.oauth.consent import consent_routes
from doable.oauth.external import ExternalTokens
from doable.oauth.provider import BuiltinAuthorizationServer
from doable.oauth.store import OAuthStore
from doable.platform.auth import ensure_local_secret
from doable.platform.settings import Settings

log = structlog.get_logger("doable.oauth")

PRM_PATH = "/.well-known/oauth-protected-resource"
# Issuers compare as strings (RFC 8414 3.3, RFC 9207): a path-less URL keeps no trailing slash.
_URL = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"


@dataclass
class OAuthSetup:
    """What the app mounts and trusts: the resource's metadata URL (None without an authorization
    server), verifiers by issuer, routes (metadata, and the built-in server's endpoints)."""

    resource: str
    resource_metadata_url: str | None = None
    verifiers: dict[str, Any] = field(default_factory=dict)
    routes: list[BaseRoute] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    builtin: BuiltinAuthorizationServer | None = None


def builtin_enabled(settings: Settings) -> bool:
    if settings.oauth_issuer:
        return False
    return settings.oauth_builtin is not False


# Where the built-in server keeps clients and grants, given the most clients it may register.
OAuthStoreFactory = Callable[[int], OAuthStore]


def oauth_setup(settings: Settings, base: str, *, store: OAuthStoreFactory | None) -> OAuthSetup:
    """The OAuth side of the app whose public URL is `base` (the MCP resource is `base`/mcp).
    `store`: where a built-in server would keep its records (None: no built-in server)."""
    resource = f"{base}/mcp"
    setup = OAuthSetup(resource=resource)
    issuer: str | None = None
    if settings.oauth_issuer:
        issuer = settings.oauth_issuer
        setup.verifiers[issuer] = ExternalTokens(
            issuer, audience=settings.oauth_audience or resource, resource=resource, leeway_seconds=settings.jwt_leeway_seconds
        )
    elif builtin_enabled(settings) and store is not None:
        try:
            issuer_url = _URL.validate_python(base)
            server = _builtin(settings, base, resource, store)
            setup.routes += _builtin_routes(server, issuer_url, settings.local_user)
        except ValueError as exc:
            # OAuth needs https, or loopback http (RFC 8414 3, OAuth 2.1 1.5).
            log.warning("oauth.builtin_off", reason=str(exc), public_url=base)
        else:
            issuer = base
            setup.builtin = server
            setup.verifiers[issuer] = server
            setup.closers.append(server.aclose)
    if issuer is None:
        return setup
    metadata = ProtectedResourceMetadata(
        resource=_URL.validate_python(resource),
        authorization_servers=[_URL.validate_python(issuer)],
        scopes_supported=list(scopes.SUPPORTED),
        resource_name="Doable",
    )
    handler = cors_middleware(ProtectedResourceMetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    # RFC 9728 3.1: the resource's path after the well-known one; the bare one for clients that
    # look at the root first.
    setup.routes += [Route(f"{PRM_PATH}/mcp", handler, methods=["GET", "OPTIONS"]), Route(PRM_PATH, handler, methods=["GET", "OPTIONS"])]
    setup.resource_metadata_url = f"{base}{PRM_PATH}/mcp"
    return setup


def _builtin(settings: Settings, base: str, resource: str, store: OAuthStoreFactory) -> BuiltinAuthorizationServer:
    from mcp.server.auth.routes import validate_issuer_url

    validate_issuer_url(_URL.validate_python(base))
    return BuiltinAuthorizationServer(
        store(settings.oauth_max_clients),
        ClientDocuments(allow_private=settings.oauth_client_metadata_allow_private),
        issuer=base,
        resource=resource,
        # A key of its own: a leak of the user-token secret must not mint OAuth tokens, nor the reverse.
        signing_secret=ensure_local_secret(settings.data_dir, "oauth-token-secret"),
        access_ttl_seconds=settings.oauth_access_token_ttl_seconds,
        refresh_ttl_seconds=settings.oauth_refresh_token_ttl_seconds,
        leeway_seconds=settings.jwt_leeway_seconds,
    )


def _builtin_routes(server: BuiltinAuthorizationServer, issuer: AnyHttpUrl, local_user: str) -> list[BaseRoute]:
    registration = ClientRegistrationOptions(
        enabled=True, valid_scopes=list(scopes.SUPPORTED), default_scopes=list(scopes.SUPPORTED)
    )
    revocation = RevocationOptions(enabled=True)
    routes = [
        r
        for r in create_auth_routes(server, issuer, client_registration_options=registration, revocation_options=revocation)
        if getattr(r, "path", None) != AS_METADATA_PATH
    ]
    metadata = build_metadata(issuer, None, registration, revocation)
    metadata.client_id_metadata_document_supported = True
    # The consent page sends `iss` with every answer (RFC 9207): mix-up protection for clients.
    metadata.authorization_response_iss_parameter_supported = True
    # Public clients (metadata documents, and native apps registering without a secret).
    metadata.token_endpoint_auth_methods_supported = ["none", "client_secret_post", "client_secret_basic"]
    metadata.revocation_endpoint_auth_methods_supported = ["none", "client_secret_post", "client_secret_basic"]
    handler = cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    for route in routes:
        if isinstance(route, Route) and route.path == "/revoke":
            route.app = _PublicClientRevocation(route.app)
    return [Route(AS_METADATA_PATH, handler, methods=["GET", "OPTIONS"]), *routes, *consent_routes(server, local_user)]


class _PublicClientRevocation:
    """RFC 7009 lets a public client revoke with its client_id alone; the SDK's revocation request
    model requires a `client_secret` field, so a form without one gets an empty one (a client that
    has a secret is still checked against it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if b"client_secret=" not in body:
            body += b"&client_secret=" if body else b"client_secret="
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
