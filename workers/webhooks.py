"""Webhook signing and sending.

Every request carries `X-Doable-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` computed with
the user's webhook secret over `<t>.<raw body>` (the timestamp is signed so a captured request
cannot be replayed later). Receivers check it with `verify_signature`. Redirects are not
followed and, unless allowed, hosts resolving to private or loopback addresses are refused, so
a webhook cannot be aimed at the server's own network.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2

from doable.inbox import is_public_host

SIGNATURE_HEADER = "X-Doable-Signature"
DELIVERY_HEADER = "X-Doable-Delivery"
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, *, now: int, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether `header` is a valid signature of `body` by `secret`, made within `tolerance` seconds of `now`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status: int | None
    error: str | None


class WebhookSender:
    def __init__(
        self, *, timeout: float = 5.0, allow_private: bool = False, client: httpx2.AsyncClient | None = None
    ) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._client = client
        self._owns_client = client is None

    async def send(self, url: str, body: str, *, secret: str, delivery_id: int, timestamp: int) -> SendResult:
        """POST the signed `body` to `url` once."""
        if not self._allow_private and not await self._resolves_public(url):
            return SendResult(ok=False, status=None, error="host resolves to a private or loopback address")
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Doable-Webhooks/1",
            SIGNATURE_HEADER: sign(secret, raw, timestamp),
            DELIVERY_HEADER: str(delivery_id),
        }
        try:
            response = await self._http().post(url, content=raw, headers=headers)
        except httpx2.HTTPError as exc:
            return SendResult(ok=False, status=None, error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return SendResult(ok=True, status=response.status_code, error=None)
        return SendResult(ok=False, status=response.status_code, error=f"endpoint answered {response.status_code}")

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._client

    @staticmethod
    async def _resolves_public(url: str) -> bool:
        host = urlsplit(url).hostname or ""
        if not is_public_host(host):
            return False
        try:
            ipaddress.ip_address(host.strip("[]"))
            return True  # a literal, already checked
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return True  # unresolvable: the POST fails and is retried like any other failure
        return all(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_global for info in infos)
