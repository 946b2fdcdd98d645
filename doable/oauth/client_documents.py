"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a client whose
`client_id` is an https URL is described by the JSON document at that URL.

The document is fetched with the webhook sender's guard against server-side request forgery: the
name is resolved once, private and loopback addresses are refused (unless allowed, for local
clients and tests), the connection goes to the address that was checked, redirects are not
followed, and the answer is small and quick or refused.
"""

from __future__ import annotations

import ssl
import time
from urllib.parse import urlsplit

import httpx2
import structlog
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from doable.oauth import scopes
from doable.oauth.clients import Client
from workers.webhooks import SendResult, WebhookSender

log = structlog.get_logger("doable.oauth")

MAX_DOCUMENT_BYTES = 10_000
CACHE_SECONDS = 300.0


class ClientDocumentError(Exception):
    """The client's metadata document is missing or invalid; the message says why."""


def is_document_client_id(client_id: str) -> bool:
    """An https URL with a path: a client identified by its metadata document."""
    parts = urlsplit(client_id)
    return parts.scheme == "https" and bool(parts.hostname) and parts.path not in ("", "/")


class ClientDocuments:
    """Fetches, checks and briefly caches client metadata documents."""

    def __init__(self, *, allow_private: bool, timeout: float = 5.0) -> None:
        # The system's trust store (OpenSSL honours SSL_CERT_FILE); no proxy from the environment,
        # which would resolve the name again.
        self._client = httpx2.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=ssl.create_default_context()
        )
        self._guard = WebhookSender(allow_private=allow_private, client=self._client)
        self._cache: dict[str, tuple[float, OAuthClientInformationFull]] = {}

    async def client(self, client_id: str) -> OAuthClientInformationFull:
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        client = await self._fetch(client_id)
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[client_id] = (time.monotonic() + CACHE_SECONDS, client)
        return client

    async def _fetch(self, client_id: str) -> OAuthClientInformationFull:
        target = await self._guard.target(client_id)
        if isinstance(target, SendResult):
            raise ClientDocumentError(f"client metadata document {client_id} refused: {target.error}")
        headers = {"Host": target.host_header, "Accept": "application/json"}
        extensions = {"sni_hostname": target.sni} if target.sni else None
        try:
            async with self._client.stream("GET", target.url, headers=headers, extensions=extensions) as response:
                if response.status_code != 200:
                    raise ClientDocumentError(f"client metadata document {client_id} answered {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ClientDocumentError(f"client metadata document {client_id} is over {MAX_DOCUMENT_BYTES} bytes")
        except httpx2.HTTPError as exc:
            log.info("oauth.client_document_unreachable", client_id=client_id, error=type(exc).__name__)
            raise ClientDocumentError(f"client metadata document {client_id} could not be fetched") from None
        try:
            client = Client.model_validate_json(body)
        except ValidationError:
            raise ClientDocumentError(f"client metadata document {client_id} is not valid client metadata") from None
        if client.client_id != client_id:
            raise ClientDocumentError(f"client metadata document {client_id} names another client_id")
        if not client.redirect_uris or not client.client_name:
            raise ClientDocumentError(f"client metadata document {client_id} lacks client_name or redirect_uris")
        if client.client_secret is not None or (client.token_endpoint_auth_method or "none") != "none":
            # A document is public: it can carry no secret, and this server verifies no client keys.
            raise ClientDocumentError(f"client metadata document {client_id}: token_endpoint_auth_method must be none")
        # Whatever the document asks for, such a client may request Doable's scopes, no more.
        return client.model_copy(update={"scope": " ".join(scopes.SUPPORTED), "token_endpoint_auth_method": "none"})

    async def aclose(self) -> None:
        await self._client.aclose()
