"""Who is calling a tool: the verified token's subject, never a tool argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from doable.domain.errors import DoableError
from doable.oauth import scopes
from doable.platform.auth import InvalidToken, TokenVerifier

UserResolver = Callable[[], str]


class PermissionDenied(DoableError):
    code = "permission_denied"


def from_http_token() -> str:
    token = get_access_token()
    if token is None or not token.subject:
        raise PermissionDenied("no authenticated user")
    return token.subject


def fixed_user(user_id: str) -> UserResolver:
    """stdio and in-process clients: the user was settled when the server was built."""
    return lambda: user_id


def resolve_user(resolver: UserResolver, claimed: str | None) -> str:
    """The caller's user id; a `user_id` argument (kept for spec compatibility) must match it."""
    user = resolver()
    if claimed is not None and claimed != user:
        raise PermissionDenied("user_id does not match the authenticated user; omit user_id")
    return user


class McpTokenVerifier:
    """Verifies the bearer tokens /mcp accepts, as the MCP SDK's AccessToken (with its scopes):

    - OAuth access tokens (`oauth`: issuer -> verifier), from the built-in authorization server
      or an external one, checked for issuer, audience (the MCP resource) and, where the issuer
      keeps a record, revocation; their scopes are what they say;
    - Doable's own user tokens (`verifier`, the ones REST takes) and, when `internal` is given,
      the short-lived tokens the chat agent mints (see doable.platform.auth.ServiceTokens). They predate
      scopes: without a `scope` claim they grant everything, as they do on REST.

    The token's unverified `iss` only picks the verifier; the verifier then checks it."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        internal: TokenVerifier | None = None,
        oauth: dict[str, OAuthVerifier] | None = None,
    ) -> None:
        self._verifier = verifier
        self._internal = internal
        self._oauth = oauth or {}

    async def verify(self, token: str) -> AccessToken:
        """The token's grant, or InvalidToken (its message is safe to show); Unavailable when the
        keys to check it cannot be fetched."""
        issuer = _unverified_issuer(token)
        if issuer is not None and issuer in self._oauth:
            return await self._oauth[issuer].verify(token)
        try:
            identity = await self._verifier.verify(token)
        except InvalidToken as user_token_error:
            if self._internal is None:
                raise
            try:
                identity = await self._internal.verify(token)
            except InvalidToken:
                raise user_token_error from None
        granted = scopes.from_claims(identity.claims)
        return AccessToken(
            token=token,
            client_id=str(identity.claims.get("azp") or identity.claims.get("client_id") or "doable"),
            scopes=[scopes.ALL] if granted is None else granted,
            expires_at=identity.claims.get("exp"),
            subject=identity.user_id,
            claims=identity.claims,
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        """The MCP SDK's TokenVerifier protocol: None for a rejected token."""
        try:
            return await self.verify(token)
        except InvalidToken:
            return None


class OAuthVerifier(Protocol):
    async def verify(self, token: str) -> AccessToken: ...


def _unverified_issuer(token: str) -> str | None:
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except Exception:  # any malformed token: the verifiers say why
        return None
    return issuer if isinstance(issuer, str) else None
