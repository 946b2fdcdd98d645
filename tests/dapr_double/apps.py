"""App channels: how the double reaches the apps behind its sidecars.

Like daprd's HTTP app channel, every call to an app carries `dapr-api-token` when
an app token is configured (APP_API_TOKEN):
https://docs.dapr.io/operations/security/app-api-token/
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2

from .subscriptions import Subscription, parse_subscriptions

APP_TOKEN_HEADER = "dapr-api-token"


class AppChannel:
    """An httpx2 client to one app, in-process (ASGI) or over a real URL."""

    def __init__(
        self,
        app_id: str,
        *,
        asgi_app: Any = None,
        base_url: str | None = None,
        app_token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (asgi_app is None) == (base_url is None):
            raise ValueError("give exactly one of asgi_app or base_url")
        self.app_id = app_id
        self._app_token = app_token
        if asgi_app is not None:
            # raise_app_exceptions=False: an exception in the app reaches the double as
            # a 500 response, which is what a real app server would send to daprd.
            transport = httpx2.ASGITransport(app=asgi_app, raise_app_exceptions=False)
            self._client = httpx2.AsyncClient(transport=transport, base_url=f"http://{app_id}", timeout=timeout)
        else:
            self._client = httpx2.AsyncClient(base_url=str(base_url), timeout=timeout)
        self.subscriptions: list[Subscription] = []

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
        return await self._client.request(method, url, content=content, headers=merged)

    async def load_subscriptions(self) -> list[Subscription]:
        """Fetch `GET /dapr/subscribe`; a 404 (or other non-200) means "no subscriptions".

        Docs: https://docs.dapr.io/reference/api/pubsub_api/#provide-a-route-for-dapr-to-discover-topic-subscriptions
        """
        response = await self.request("GET", "/dapr/subscribe", headers={"dapr-app-id": self.app_id})
        self.subscriptions = parse_subscriptions(response.json() if response.status_code == 200 else None)
        return self.subscriptions

    def subscription_for(self, pubsub: str, topic: str) -> Subscription | None:
        # daprd keeps one subscription per pubsub/topic; the last one declared wins.
        found = None
        for sub in self.subscriptions:
            if sub.pubsub == pubsub and sub.topic == topic:
                found = sub
        return found

    async def aclose(self) -> None:
        await self._client.aclose()


class AppRegistry:
    """The apps known to the double, by app id."""

    def __init__(self) -> None:
        self._apps: dict[str, AppChannel] = {}

    def add(self, channel: AppChannel) -> None:
        if channel.app_id in self._apps:
            raise ValueError(f"app {channel.app_id!r} is already registered")
        self._apps[channel.app_id] = channel

    def get(self, app_id: str) -> AppChannel | None:
        return self._apps.get(app_id)

    def all(self) -> list[AppChannel]:
        return list(self._apps.values())

    def subscribers(self, pubsub: str, topic: str) -> list[str]:
        """Every app subscribed to the topic: each app id is its own consumer group."""
        return [a.app_id for a in self._apps.values() if a.subscription_for(pubsub, topic) is not None]

    async def aclose(self) -> None:
        for channel in self._apps.values():
            await channel.aclose()
        self._apps.clear()
