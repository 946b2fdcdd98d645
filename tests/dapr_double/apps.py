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

import time
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
        pod: str | None = None,
    ) -> None:
        if (asgi_app is None) == (base_url is None):
            raise ValueError("give exactly one of asgi_app or base_url")
        self.app_id = app_id
        self.pod = pod or default_pod(app_id)
        self._app_token = app_token
        if asgi_app is not None:
            # raise_app_exceptions=False: an exception in the app reaches the double as
            # a 500 response, which is what a real app server would send to daprd.
            transport = httpx2.ASGITransport(app=asgi_app, raise_app_exceptions=False)
            self._client = httpx2.AsyncClient(transport=transport, base_url=f"http://{app_id}", timeout=timeout)
        else:
            self._client = httpx2.AsyncClient(base_url=str(base_url), timeout=timeout)
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
        return await self._client.request(method, url, content=content, headers=merged)

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
        await self._client.aclose()


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
