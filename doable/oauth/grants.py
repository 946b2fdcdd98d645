"""An OAuth access token's grant as the MCP SDK's AccessToken."""

from __future__ import annotations

from mcp.server.auth.provider import AccessToken

from doable.oauth import scopes
from doable.platform.auth import Identity


def access_token(identity: Identity, *, resource: str) -> AccessToken:
    """An OAuth access token's grant: its `scope`/`scp` claim (none: no scopes)."""
    claims = identity.claims
    return AccessToken(
        token=identity.token,
        client_id=str(claims.get("client_id") or claims.get("azp") or ""),
        scopes=scopes.from_claims(claims) or [],
        expires_at=claims.get("exp"),
        resource=resource,
        subject=identity.user_id,
        claims=claims,
    )
