"""App channels: how the double reaches the apps behind its sidecars.

An app id may run as several pods (replicas), each with its own sidecar and app channel: a
channel is one (app id, pod). Pods matter to pub/sub, where a `{podName}` consumer group
gives every pod every message and replicas in one group share the partitions
(dapr/dapr `pkg/runtime/meta/meta.go`). Everything else reaches an app id through its
first registered pod.

Like daprd's HTTP app channel, every call to an app carries `dapr-api-token` when
an app token is configured (APP_API_TOKEN):
https://docs.dapr.io/operations/security/app-api-token/
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx2
import yarl

from .subscriptions import Subscription, parse_subscriptions

APP_TOKEN_HEADER = "dapr-api-token"
APP_KEEPALIVE_SECONDS = 4.0


class AppChannel:
    """A client to one app: httpx2 in-process (ASGI), aiohttp over a real URL.

    aiohttp for a real app because the double is Python sharing the machine's cores with the apps
    it drives (and, in the soak, with the load generator): httpx2 costs several times aiohttp's
    CPU per call. Either way a call answers an `httpx2.Response` and fails with an
    `httpx2.TransportError`, which is what the double's callers handle."""

    def __init__(
        self,
        app_id: str,
        *,
        asgi_app: Any = None,
        base_url: str | None = None,
        app_token: str | None = None,
        timeout: float = 10.0,
        pod: str | None = None,
    ) -> None:
        if (asgi_app is None) == (base_url is None):
            raise ValueError("give exactly one of asgi_app or base_url")
        self.app_id = app_id
        self.pod = pod or default_pod(app_id)
        self._app_token = app_token
        self._timeout = timeout
        self._base = None if base_url is None else str(base_url).rstrip("/")
        self._client: httpx2.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        if asgi_app is not None:
            # raise_app_exceptions=False: an exception in the app reaches the double as
            # a 500 response, which is what a real app server would send to daprd.
            transport = httpx2.ASGITransport(app=asgi_app, raise_app_exceptions=False)
            self._client = httpx2.AsyncClient(transport=transport, base_url=f"http://{app_id}", timeout=timeout)
        self.subscriptions: list[Subscription] = []
        # When daprd (re)started this pod's subscriptions: the phase of the Kafka component's
        # bulk-subscribe ticker (bulk_subscribe.py), created when ConsumeClaim starts.
        self.subscribed_at = time.monotonic()

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
        params: str | None = None,
    ) -> httpx2.Response:
        """Send one request to the app; raises httpx2.TransportError when it is unreachable."""
        merged = dict(headers or {})
        if self._app_token:
            merged[APP_TOKEN_HEADER] = self._app_token
        url = "/" + path.lstrip("/")
        if params:
            url = f"{url}?{params}"
        if self._client is not None:
            return await self._client.request(method, url, content=content, headers=merged)
        return await self._over_network(method, url, content, merged)

    async def _over_network(self, method: str, url: str, content: bytes, headers: dict[str, str]) -> httpx2.Response:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop or self._session.closed:
            # Idle connections are dropped before the app's own keep-alive timeout (uvicorn's 5 s)
            # closes them, so none is reused as the app closes it: Go's transport in daprd retries
            # a request that found its reused connection closed, aiohttp does not for a POST.
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=APP_KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
            self._session_loop = loop
        # As httpx2's timeout: every phase (a pooled connection, connecting, each read) gets it all.
        budget = aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_read=self._timeout)
        try:
            async with self._session.request(
                method, yarl.URL(f"{self._base}{url}"), data=content, headers=headers, timeout=budget
            ) as answer:
                body = await answer.read()
                return httpx2.Response(answer.status, headers=answer.raw_headers, content=body)
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx2.ConnectTimeout(str(exc) or "timed out connecting to the app") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc)) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx2.ReadTimeout(str(exc) or "the app did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__) from exc

    async def load_subscriptions(self) -> list[Subscription]:
        """Fetch `GET /dapr/subscribe`; a 404 (or other non-200) means "no subscriptions".

        Docs: https://docs.dapr.io/reference/api/pubsub_api/#provide-a-route-for-dapr-to-discover-topic-subscriptions
        """
        response = await self.request("GET", "/dapr/subscribe", headers={"dapr-app-id": self.app_id})
        self.subscriptions = parse_subscriptions(response.json() if response.status_code == 200 else None)
        self.subscribed_at = time.monotonic()
        return self.subscriptions

    def subscription_for(self, pubsub: str, topic: str) -> Subscription | None:
        # daprd keeps one subscription per pubsub/topic; the last one declared wins.
        found = None
        for sub in self.subscriptions:
            if sub.pubsub == pubsub and sub.topic == topic:
                found = sub
        return found

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def default_pod(app_id: str) -> str:
    """The pod name of an app registered without one (the first replica of a Deployment)."""
    return f"{app_id}-0"


class AppRegistry:
    """The apps known to the double: one channel per (app id, pod), in registration order."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], AppChannel] = {}

    def add(self, channel: AppChannel) -> None:
        key = (channel.app_id, channel.pod)
        if key in self._pods:
            raise ValueError(f"app {channel.app_id!r} pod {channel.pod!r} is already registered")
        self._pods[key] = channel

    def get(self, app_id: str, pod: str | None = None) -> AppChannel | None:
        """The channel of one pod, or of the app id's first registered pod."""
        if pod is not None:
            return self._pods.get((app_id, pod))
        return next((c for (a, _), c in self._pods.items() if a == app_id), None)

    def pods(self, app_id: str) -> list[AppChannel]:
        return [c for (a, _), c in self._pods.items() if a == app_id]

    def all(self) -> list[AppChannel]:
        """Every pod's channel."""
        return list(self._pods.values())

    async def aclose(self) -> None:
        for channel in self._pods.values():
            await channel.aclose()
        self._pods.clear()
