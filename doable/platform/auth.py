"""Bearer tokens: verification (HS256 shared secret or a JWKS) and minting dev tokens.

Identity comes only from a verified token's `sub`; never from a tool argument.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt
import structlog

from doable.domain.errors import Unavailable
from doable.platform.settings import Settings

log = structlog.get_logger("doable.platform.auth")

ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
SYMMETRIC = {"HS256", "HS384", "HS512"}


class InvalidToken(Exception):
    """The token is missing, malformed, expired, not yet valid, or not ours. The message is safe to show."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    claims: dict[str, Any]
    token: str


def ensure_local_secret(data_dir: Path, name: str = "jwt-secret") -> str:
    """The embedded-mode signing secret `name`, created once (0600) so `serve` and `token` agree."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


class JwksCache:
    """Keys from a JWKS URL, fetched asynchronously, refreshed on an unknown `kid` (key rotation)."""

    def __init__(
        self, url: str, *, client: httpx2.AsyncClient | None = None, min_refresh_seconds: float = 30.0
    ) -> None:
        self._url = url
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._min_refresh = min_refresh_seconds
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        if (found := self._lookup(kid)) is not None:
            return found
        async with self._lock:
            if (found := self._lookup(kid)) is not None:
                return found
            # Refetch on an unknown kid (the provider rotated keys), but not on every bad token.
            if self._keys and time.monotonic() - self._fetched_at < self._min_refresh:
                raise InvalidToken("token signed with an unknown key")
            await self._refresh()
        if (found := self._lookup(kid)) is None:
            raise InvalidToken("token signed with an unknown key")
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid or "")

    async def _refresh(self) -> None:
        client = self._client or httpx2.AsyncClient(timeout=5.0)
        try:
            response = await client.get(self._url)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx2.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            raise Unavailable("the identity provider's keys could not be fetched") from exc
        finally:
            if self._client is None:
                await client.aclose()
        self._keys = {k.key_id or "": k for k in jwks.keys}
        self._fetched_at = time.monotonic()


class TokenVerifier:
    """Checks signature, algorithm, issuer, audience, expiry and not-before (with leeway)."""

    def __init__(
        self,
        *,
        secret: str | None,
        issuer: str,
        audience: str,
        jwks: JwksCache | None = None,
        algorithms: list[str] | None = None,
        leeway_seconds: int = 30,
    ) -> None:
        if (secret is None) == (jwks is None):
            raise ValueError("configure exactly one of a shared secret or a JWKS URL")
        self._secret = secret
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        # Only HMAC algorithms with a shared secret, only asymmetric ones with a JWKS: no HS/RS confusion.
        self._algorithms = [a for a in (algorithms or ["HS256"]) if a in SYMMETRIC] if secret else ASYMMETRIC

    async def verify(self, token: str, *, audience: str | None = None) -> Identity:
        """The token's identity, or InvalidToken: whatever the token holds (any header, any key
        type, any claim), a failure to verify is InvalidToken, and its message never quotes the
        token (messages end up in the WWW-Authenticate header). Unavailable: the JWKS could not
        be fetched."""
        try:
            return await self._verify(token, audience)
        except (InvalidToken, Unavailable):
            raise
        except Exception as exc:  # a key/algorithm mismatch, a malformed key, ...: not a valid token
            log.info("auth.token_rejected", error_type=type(exc).__name__)
            raise InvalidToken("invalid bearer token") from None

    async def _verify(self, token: str, audience: str | None) -> Identity:
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise InvalidToken("missing or oversized bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed bearer token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken("token algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("token key id is invalid")
        key: Any
        if self._jwks is not None:
            key = (await self._jwks.key(kid)).key
        else:
            key = self._secret
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience or self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token issuer is not accepted") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in ("exp", "sub", "iss", "aud") else "a required"
            raise InvalidToken(f"token lacks the {claim} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid bearer token") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 128:
            raise InvalidToken("token subject is missing or invalid")
        return Identity(user_id=sub, claims=claims, token=token)


def mint(
    secret: str, *, user_id: str, issuer: str, audience: str, ttl_seconds: int, extra: dict[str, Any] | None = None
) -> str:
    """An HS256 token for `user_id` (dev tokens, and the chat agent's per-turn MCP token)."""
    now = int(time.time())
    claims = {"sub": user_id, "iss": issuer, "aud": audience, "iat": now, "nbf": now, "exp": now + ttl_seconds}
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")


class ServiceTokens:
    """Short-lived HS256 tokens that one Doable component mints for a user and another verifies.

    The chat agent calls the MCP server with these (audience `mcp_token_audience`), so the
    MCP tools act for the signed-in user without the model ever choosing a user id. The
    audience differs from user tokens', so a service token is never accepted by REST.
    """

    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_seconds: int, leeway_seconds: int = 30) -> None:
        self._secret = secret
        self._issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.verifier = TokenVerifier(
            secret=secret, issuer=issuer, audience=audience, algorithms=["HS256"], leeway_seconds=leeway_seconds
        )

    def mint(self, user_id: str, *, scope: str = "tasks") -> str:
        return mint(
            self._secret,
            user_id=user_id,
            issuer=self._issuer,
            audience=self.audience,
            ttl_seconds=self.ttl_seconds,
            extra={"scope": scope, "azp": "doable-chat"},
        )


def service_tokens(settings: Settings, signing_secret: str | None) -> ServiceTokens:
    """Service tokens signed with DOABLE_INTERNAL_TOKEN_SECRET, else the user-token secret; with a
    JWKS (no shared secret) and no internal secret configured, one generated under data_dir."""
    if settings.internal_token_secret is not None:
        secret = settings.internal_token_secret.get_secret_value()
    elif signing_secret is not None:
        secret = signing_secret
    else:
        secret = ensure_local_secret(settings.data_dir, "internal-token-secret")
    return ServiceTokens(
        secret,
        issuer=settings.jwt_issuer,
        audience=settings.mcp_token_audience,
        ttl_seconds=settings.mcp_token_ttl_seconds,
        leeway_seconds=settings.jwt_leeway_seconds,
    )


def parse_ttl(text: str) -> int:
    """'90s', '15m', '8h', '7d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    try:
        seconds = int(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else int(raw)
    except (ValueError, KeyError):
        raise ValueError(f"ttl must look like 90s, 15m, 8h or 7d (got {text!r})") from None
    if not 1 <= seconds <= 366 * 86400:
        raise ValueError("ttl must be between 1 second and 366 days")
    return seconds
