"""Who is calling a tool: the verified token's subject, never a tool argument."""

from __future__ import annotations

from collections.abc import Callable

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from doable.auth import InvalidToken, TokenVerifier
from doable.domain.errors import DoableError

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
    """Adapts Doable's verifier to the MCP SDK's TokenVerifier protocol (None = rejected -> 401).

    Accepts user tokens (`verifier`) and, when `internal` is given, the short-lived tokens the
    chat agent mints for the MCP audience (see doable.auth.ServiceTokens)."""

    def __init__(self, verifier: TokenVerifier, *, internal: TokenVerifier | None = None) -> None:
        self._verifier = verifier
        self._internal = internal

    async def verify_token(self, token: str) -> AccessToken | None:
        # Every failure to verify is a rejection (401 with the SDK's own fixed header), never an
        # error escaping into the transport (a 500); TokenVerifier.verify already raises only
        # InvalidToken for a bad token.
        try:
            identity = await self._verifier.verify(token)
        except InvalidToken:
            if self._internal is None:
                return None
            try:
                identity = await self._internal.verify(token)
            except InvalidToken:
                return None
        return AccessToken(
            token=token,
            client_id=str(identity.claims.get("azp") or identity.claims.get("client_id") or "doable"),
            scopes=str(identity.claims.get("scope", "")).split(),
            expires_at=identity.claims.get("exp"),
            subject=identity.user_id,
            claims=identity.claims,
        )
