"""The built-in authorization server of the embedded single-user default, on the MCP SDK's
authorization-server handlers (mcp.server.auth: PKCE S256, code and refresh grants, dynamic
registration, revocation). This module is the SDK's provider: where clients, codes and tokens
live, what a token says, and the hand-off to the consent page.

Access tokens are short-lived JWTs (RFC 9068 `at+jwt`) signed with a key of this server, with
`aud` the MCP resource; each is recorded, so revoking it (or its refresh token) ends it at once.
Refresh tokens rotate: each use returns a new one and retires the old.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
import structlog
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

from doable.oauth import scopes
from doable.oauth.client_documents import ClientDocumentError, ClientDocuments, is_document_client_id
from doable.oauth.grants import access_token
from doable.oauth.store import OAuthStore, TooManyClients
from doable.platform.auth import InvalidToken, TokenVerifier

log = structlog.get_logger("doable.oauth")

CODE_TTL_SECONDS = 300
CONSENT_TTL_SECONDS = 600
MAX_PENDING = 200


def same_resource(given: str, ours: str) -> bool:
    """RFC 8707 resource comparison: scheme and host case and a trailing slash aside."""
    try:
        a, b = AnyUrl(given.strip()), AnyUrl(ours)
    except ValueError:
        return False
    return str(a).rstrip("/") == str(b).rstrip("/")


@dataclass
class PendingConsent:
    """An authorization request waiting for the person's answer on the consent page."""

    client: OAuthClientInformationFull
    params: AuthorizationParams
    csrf: str
    expires_at: float


class BuiltinAuthorizationServer(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """The SDK's OAuthAuthorizationServerProvider for the local user. Subclassed, not only matched, so
    the grants it does not offer (the SEP-990 jwt-bearer exchange) keep the SDK's refusing defaults."""

    def __init__(
        self,
        store: OAuthStore,
        documents: ClientDocuments,
        *,
        issuer: str,
        resource: str,
        signing_secret: str,
        access_ttl_seconds: int,
        refresh_ttl_seconds: int,
        leeway_seconds: int,
    ) -> None:
        self.issuer = issuer
        self.resource = resource
        self._store = store
        self._documents = documents
        self._secret = signing_secret
        self._access_ttl = access_ttl_seconds
        self._refresh_ttl = refresh_ttl_seconds
        self._verifier = TokenVerifier(
            secret=signing_secret, issuer=issuer, audience=resource, algorithms=["HS256"], leeway_seconds=leeway_seconds
        )
        self._pending: OrderedDict[str, PendingConsent] = OrderedDict()

    # ---- clients ---------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if is_document_client_id(client_id):
            try:
                return await self._documents.client(client_id)
            except ClientDocumentError as exc:
                log.info("oauth.client_document_refused", reason=str(exc))
                return None
        return await self._store.get_client(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        try:
            await self._store.add_client(client_info)
        except TooManyClients:
            raise RegistrationError("invalid_client_metadata", "too many registered clients; use a client metadata document") from None
        log.info("oauth.client_registered", client_id=client_info.client_id, client_name=client_info.client_name)

    # ---- the authorization request and the consent page ------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and not same_resource(params.resource, self.resource):
            raise AuthorizeError("invalid_target", f"this server issues tokens for {self.resource} only")
        requested = params.scopes or list(scopes.SUPPORTED)
        if unknown := sorted(set(requested) - set(scopes.SUPPORTED)):
            raise AuthorizeError("invalid_scope", f"unknown scope(s) {' '.join(unknown)}; supported: {' '.join(scopes.SUPPORTED)}")
        params = params.model_copy(update={"scopes": requested, "resource": self.resource})
        request_id = secrets.token_urlsafe(24)
        self._expire_pending()
        while len(self._pending) >= MAX_PENDING:
            self._pending.popitem(last=False)
        self._pending[request_id] = PendingConsent(
            client=client, params=params, csrf=secrets.token_urlsafe(24), expires_at=time.time() + CONSENT_TTL_SECONDS
        )
        return f"{self.issuer}/oauth/consent?request={request_id}"

    def pending(self, request_id: str) -> PendingConsent | None:
        self._expire_pending()
        return self._pending.get(request_id)

    def answer(self, request_id: str) -> PendingConsent | None:
        """Take a pending request off the list (it is answered once)."""
        self._expire_pending()
        return self._pending.pop(request_id, None)

    def _expire_pending(self) -> None:
        now = time.time()
        for key in [k for k, p in self._pending.items() if p.expires_at < now]:
            del self._pending[key]

    async def approve(self, consent: PendingConsent, subject: str) -> str:
        """A new authorization code for `subject` (the local user) answering `consent`."""
        code = secrets.token_urlsafe(32)
        await self._store.save_code(
            code,
            AuthorizationCode(
                code="",
                scopes=consent.params.scopes or list(scopes.SUPPORTED),
                expires_at=time.time() + CODE_TTL_SECONDS,
                client_id=consent.client.client_id,
                code_challenge=consent.params.code_challenge,
                redirect_uri=consent.params.redirect_uri,
                redirect_uri_provided_explicitly=consent.params.redirect_uri_provided_explicitly,
                resource=self.resource,
                subject=subject,
            ),
        )
        log.info("oauth.consent_given", client_id=consent.client.client_id, user_id=subject)
        return code

    # ---- the token endpoint ----------------------------------------------------------------------

    async def load_authorization_code(self, client: OAuthClientInformationFull, authorization_code: str) -> AuthorizationCode | None:
        found = await self._store.get_code(authorization_code)
        return found.model_copy(update={"code": authorization_code}) if found else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        if not await self._store.take_code(authorization_code.code):
            raise TokenError("invalid_grant", "authorization code was already used")
        assert authorization_code.subject is not None  # every code is made by approve()
        return await self._issue(client.client_id, authorization_code.subject, authorization_code.scopes)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        return await self._store.get_refresh(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        if not await self._store.take_refresh(refresh_token.token):
            raise TokenError("invalid_grant", "refresh token was already used or revoked")
        assert refresh_token.subject is not None
        return await self._issue(client.client_id, refresh_token.subject, scopes)

    async def _issue(self, client_id: str, subject: str, granted: list[str]) -> OAuthToken:
        now = int(time.time())
        jti = secrets.token_urlsafe(24)
        scope = " ".join(granted)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.resource,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + self._access_ttl,
            "jti": jti,
        }
        token = jwt.encode(claims, self._secret, algorithm="HS256", headers={"typ": "at+jwt"})
        refresh = RefreshToken(
            token=secrets.token_urlsafe(32),
            client_id=client_id,
            scopes=granted,
            expires_at=now + self._refresh_ttl,
            resource=self.resource,
            subject=subject,
        )
        await self._store.save_tokens(jti, now + self._access_ttl, refresh)
        log.info("oauth.tokens_issued", client_id=client_id, user_id=subject, scope=scope)
        return OAuthToken(access_token=token, expires_in=self._access_ttl, scope=scope, refresh_token=refresh.token)

    # ---- the resource server's check, and revocation ---------------------------------------------

    async def verify(self, token: str) -> AccessToken:
        """The grant of one of this server's live access tokens, or InvalidToken."""
        identity = await self._verifier.verify(token)
        jti = identity.claims.get("jti")
        if not isinstance(jti, str) or not await self._store.access_token_live(jti):
            raise InvalidToken("token was revoked")
        return access_token(identity, resource=self.resource)

    async def load_access_token(self, token: str) -> AccessToken | None:
        try:
            return await self.verify(token)
        except InvalidToken:
            return None

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        if isinstance(token, RefreshToken):
            await self._store.revoke_refresh(token.token)
        else:
            jti = (token.claims or {}).get("jti")
            if isinstance(jti, str):
                await self._store.revoke_access(jti)
        log.info("oauth.token_revoked", client_id=token.client_id, kind=type(token).__name__)

    async def aclose(self) -> None:
        await self._documents.aclose()
