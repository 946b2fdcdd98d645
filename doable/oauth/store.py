"""The built-in authorization server's records in the embedded SQL database (migration 0009).

Codes and tokens are kept as SHA-256 hashes: a copy of the database grants nothing. Taking a code
or a refresh token deletes it in the same statement that finds it, so each is used once even
when two requests race.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from mcp.server.auth.provider import AuthorizationCode, RefreshToken
from mcp.shared.auth import OAuthClientInformationFull
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.oauth.clients import Client

_meta = sa.MetaData()
clients = sa.Table(
    "oauth_clients",
    _meta,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)
codes = sa.Table(
    "oauth_codes",
    _meta,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
)
refresh_tokens = sa.Table(
    "oauth_refresh_tokens",
    _meta,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
)
access_tokens = sa.Table(
    "oauth_access_tokens",
    _meta,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("refresh_hash", sa.String(64), nullable=True),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


class TooManyClients(Exception):
    """Dynamic registration is full (each registration is a row anyone may create)."""


class OAuthStore:
    def __init__(self, engine: AsyncEngine, *, max_clients: int) -> None:
        self._engine = engine
        self._max_clients = max_clients

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        async with self._engine.connect() as conn:
            data = (await conn.execute(sa.select(clients.c.data).where(clients.c.client_id == client_id))).scalar()
        return Client.model_validate_json(data) if data else None

    async def add_client(self, client: OAuthClientInformationFull) -> None:
        async with self._engine.begin() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(clients))).scalar_one()
            if count >= self._max_clients:
                raise TooManyClients
            await conn.execute(
                clients.insert().values(
                    client_id=client.client_id, data=client.model_dump_json(exclude_none=True), created_us=_us(time.time())
                )
            )

    async def save_code(self, code: str, record: AuthorizationCode) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(codes.delete().where(codes.c.expires_us < _us(time.time())))
            await conn.execute(
                codes.insert().values(code_hash=digest(code), data=record.model_dump_json(), expires_us=_us(record.expires_at))
            )

    async def get_code(self, code: str) -> AuthorizationCode | None:
        async with self._engine.connect() as conn:
            data = (await conn.execute(sa.select(codes.c.data).where(codes.c.code_hash == digest(code)))).scalar()
        return AuthorizationCode.model_validate_json(data) if data else None

    async def take_code(self, code: str) -> bool:
        """Delete the code; False when it was already used (or never existed)."""
        async with self._engine.begin() as conn:
            return (await conn.execute(codes.delete().where(codes.c.code_hash == digest(code)))).rowcount == 1

    async def save_tokens(self, jti: str, access_expires_at: int, refresh: RefreshToken) -> None:
        now = _us(time.time())
        async with self._engine.begin() as conn:
            await conn.execute(access_tokens.delete().where(access_tokens.c.expires_us < now))
            await conn.execute(refresh_tokens.delete().where(refresh_tokens.c.expires_us < now))
            await conn.execute(
                refresh_tokens.insert().values(
                    token_hash=digest(refresh.token),
                    data=refresh.model_copy(update={"token": ""}).model_dump_json(),
                    expires_us=_us(refresh.expires_at or 0),
                )
            )
            await conn.execute(
                access_tokens.insert().values(jti=jti, refresh_hash=digest(refresh.token), expires_us=_us(access_expires_at))
            )

    async def get_refresh(self, token: str) -> RefreshToken | None:
        async with self._engine.connect() as conn:
            data = (
                await conn.execute(sa.select(refresh_tokens.c.data).where(refresh_tokens.c.token_hash == digest(token)))
            ).scalar()
        return RefreshToken.model_validate_json(data).model_copy(update={"token": token}) if data else None

    async def take_refresh(self, token: str) -> bool:
        """Delete the refresh token (rotation); False when it was already used or revoked."""
        async with self._engine.begin() as conn:
            taken = await conn.execute(refresh_tokens.delete().where(refresh_tokens.c.token_hash == digest(token)))
            return taken.rowcount == 1

    async def access_token_live(self, jti: str) -> bool:
        async with self._engine.connect() as conn:
            found = await conn.execute(sa.select(access_tokens.c.jti).where(access_tokens.c.jti == jti))
            return found.first() is not None

    async def revoke_access(self, jti: str) -> None:
        """Revoke an access token and the refresh token it came with."""
        async with self._engine.begin() as conn:
            refresh_hash = (
                await conn.execute(sa.select(access_tokens.c.refresh_hash).where(access_tokens.c.jti == jti))
            ).scalar()
            await conn.execute(access_tokens.delete().where(access_tokens.c.jti == jti))
            if refresh_hash:
                await conn.execute(refresh_tokens.delete().where(refresh_tokens.c.token_hash == refresh_hash))

    async def revoke_refresh(self, token: str) -> None:
        """Revoke a refresh token and every access token issued with it."""
        token_hash = digest(token)
        async with self._engine.begin() as conn:
            await conn.execute(refresh_tokens.delete().where(refresh_tokens.c.token_hash == token_hash))
            await conn.execute(access_tokens.delete().where(access_tokens.c.refresh_hash == token_hash))
