"""Tokens of an external authorization server (Keycloak, Auth0, Better Auth, any OpenID provider
that issues JWT access tokens): its keys found by discovery, its tokens checked for issuer,
audience (the MCP resource, RFC 8707) and signature."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2
import structlog
from mcp.server.auth.provider import AccessToken

from doable.domain.errors import Unavailable
from doable.oauth.grants import access_token
from doable.platform.auth import JwksCache, TokenVerifier

log = structlog.get_logger("doable.oauth")


def discovery_urls(issuer: str) -> list[str]:
    """Where an issuer publishes its metadata: RFC 8414 (the well-known path inserted before the
    issuer's path), then OpenID Connect Discovery (appended, and inserted)."""
    parts = urlsplit(issuer.rstrip("/"))
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path
    urls = [f"{origin}/.well-known/oauth-authorization-server{path}", f"{origin}{path}/.well-known/openid-configuration"]
    if path:
        urls.append(f"{origin}/.well-known/openid-configuration{path}")
    return urls


class DiscoveredJwks(JwksCache):
    """The issuer's JWKS, its URL read from the issuer's metadata on first use."""

    def __init__(self, issuer: str, *, client: httpx2.AsyncClient | None = None) -> None:
        super().__init__("", client=client)
        self._issuer = issuer

    async def _refresh(self) -> None:
        if not self._url:
            self._url = await self._jwks_uri()
        await super()._refresh()

    async def _jwks_uri(self) -> str:
        client = self._client or httpx2.AsyncClient(timeout=5.0)
        try:
            for url in discovery_urls(self._issuer):
                try:
                    response = await client.get(url, headers={"Accept": "application/json"})
                except httpx2.HTTPError:
                    continue
                if response.status_code != 200:
                    continue
                try:
                    metadata = response.json()
                except ValueError:
                    continue
                # RFC 8414 3.3: metadata naming another issuer must not be used.
                if isinstance(metadata, dict) and metadata.get("issuer") == self._issuer and metadata.get("jwks_uri"):
                    return str(metadata["jwks_uri"])
        finally:
            if self._client is None:
                await client.aclose()
        log.warning("oauth.discovery_failed", issuer=self._issuer)
        raise Unavailable("the authorization server's metadata could not be fetched")


class ExternalTokens:
    """Verifies access tokens of the external authorization server `issuer` for `audience`."""

    def __init__(self, issuer: str, *, audience: str, resource: str, leeway_seconds: int, jwks: JwksCache | None = None) -> None:
        self.issuer = issuer
        self._resource = resource
        self._verifier = TokenVerifier(
            secret=None, jwks=jwks or DiscoveredJwks(issuer), issuer=issuer, audience=audience, leeway_seconds=leeway_seconds
        )

    async def verify(self, token: str) -> AccessToken:
        return access_token(await self._verifier.verify(token), resource=self._resource)
