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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx2

from doable.domain.notifications import is_public_host

SIGNATURE_HEADER = "X-Doable-Signature"
DELIVERY_HEADER = "X-Doable-Delivery"
TOLERANCE_SECONDS = 300
PRIVATE = "host resolves to a private or loopback address"


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


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the event loop's getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


@dataclass(frozen=True)
class Target:
    """Where a request really goes: the vetted address, and the name for Host and TLS (SNI and
    certificate check)."""

    url: httpx2.URL
    host_header: str
    sni: str | None


class WebhookSender:
    """Sends signed webhooks. The host name is resolved once, the addresses are checked, and the
    connection goes to the address that was checked (with the original Host header and TLS server
    name): a DNS answer that changes between the check and the connect (DNS rebinding) cannot
    point a webhook at a private address."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        allow_private: bool = False,
        client: httpx2.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._client = client
        self._owns_client = client is None
        self._resolve = resolver

    async def send(self, url: str, body: str, *, secret: str, delivery_id: int, timestamp: int) -> SendResult:
        """POST the signed `body` to `url` once."""
        target = await self.target(url)
        if isinstance(target, SendResult):
            return target
        raw = body.encode()
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "Doable-Webhooks/1",
            SIGNATURE_HEADER: sign(secret, raw, timestamp),
            DELIVERY_HEADER: str(delivery_id),
        }
        extensions = {"sni_hostname": target.sni} if target.sni else None
        try:
            response = await self._http().post(target.url, content=raw, headers=headers, extensions=extensions)
        except httpx2.HTTPError as exc:
            return SendResult(ok=False, status=None, error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return SendResult(ok=True, status=response.status_code, error=None)
        return SendResult(ok=False, status=response.status_code, error=f"endpoint answered {response.status_code}")

    async def target(self, url: str) -> Target | SendResult:
        """The vetted address to connect to for `url`, or why not (a failed SendResult)."""
        parsed = httpx2.URL(url)
        host = parsed.host
        if not host or parsed.scheme not in ("http", "https"):
            return SendResult(ok=False, status=None, error="not an http(s) URL")
        if not self._allow_private and not is_public_host(host):
            return SendResult(ok=False, status=None, error=PRIVATE)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                return SendResult(ok=False, status=None, error=f"could not resolve {host}: {exc}"[:300])
            if not addresses:
                return SendResult(ok=False, status=None, error=f"could not resolve {host}")
        try:
            checked = [ipaddress.ip_address(a) for a in addresses]
        except ValueError:
            return SendResult(ok=False, status=None, error=f"could not resolve {host}")
        if not self._allow_private and not all(a.is_global for a in checked):
            return SendResult(ok=False, status=None, error=PRIVATE)
        netloc_host = f"[{host}]" if ":" in host else host
        host_header = netloc_host if parsed.port is None else f"{netloc_host}:{parsed.port}"
        return Target(
            url=parsed.copy_with(host=str(checked[0])),
            host_header=host_header,
            sni=host if parsed.scheme == "https" and literal is None else None,
        )

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            # trust_env=False: no proxy from the environment, which would resolve the name again.
            self._client = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False, trust_env=False)
        return self._client
