"""A thin async client for the Dapr sidecar's HTTP API (v1.0).

Why not the SDK: `DaprClient()` blocks up to 60 s in its constructor waiting for the
sidecar, even the aio client. This client never blocks the event loop, retries
transient failures a bounded number of times with backoff, and turns what the
sidecar says into domain errors: 409 (ETag mismatch) -> Conflict, unreachable or
5xx after retries -> Unavailable.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import structlog

from doable.domain.errors import Conflict, Unavailable

log = structlog.get_logger("doable.dapr")


@dataclass(frozen=True)
class StateItem:
    key: str
    value: Any
    etag: str | None


@dataclass(frozen=True)
class Upsert:
    key: str
    value: Any
    # None with first_write creates the key only if absent (Dapr: first-write without ETag).
    etag: str | None = None
    first_write: bool = True
    # The store forgets the key after this long (state.postgresql and state.redis support TTLs).
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str
    etag: str | None = None


class DaprClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:3500",
        *,
        api_token: str | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.05,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"dapr-api-token": api_token} if api_token else {}
        self._http = httpx2.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self._retries = retries
        self._backoff = backoff

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, retry: bool = True, idempotent: bool = True, **kwargs: Any
    ) -> httpx2.Response:
        """Send one call, retried a bounded number of times with backoff; Unavailable after that.

        A call that is not `idempotent` (a state transaction) is not repeated once it may have
        reached the sidecar without an answer (a read timeout, a dropped connection): it may have
        committed, and repeating it could not tell. Refused connections and 5xx answers (the
        sidecar says it did nothing) are retried."""
        attempts = self._retries + 1 if retry else 1
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                response = await self._http.request(method, path, **kwargs)
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
                last = exc  # never sent
            except (httpx2.TransportError, httpx2.TimeoutException) as exc:
                last = exc
                if not idempotent:
                    log.warning("dapr.outcome_unknown", method=method, path=path.split("?")[0], error=str(exc))
                    raise Unavailable("the Dapr sidecar did not answer in time; try again shortly") from exc
            else:
                if response.status_code < 500 or response.status_code == 501:
                    return response
                if _is_etag_error(response):
                    return response
                last = RuntimeError(f"sidecar answered {response.status_code}")
            if attempt + 1 < attempts:
                # Full jitter keeps a crowd of retries from arriving together.
                await asyncio.sleep(random.uniform(0, self._backoff * 2**attempt))
        log.warning("dapr.unavailable", method=method, path=path.split("?")[0], error=str(last))
        raise Unavailable("the Dapr sidecar is unavailable; try again shortly") from last

    # ---- health ---------------------------------------------------------------------------

    async def healthy(self) -> bool:
        try:
            response = await self._http.get("/v1.0/healthz/outbound", timeout=2.0)
        except (httpx2.TransportError, httpx2.TimeoutException):
            return False
        return response.status_code < 300

    async def check(self) -> None:
        """Raise Unavailable unless the sidecar answers its health check (for /readyz)."""
        if not await self.healthy():
            raise Unavailable("the Dapr sidecar is unavailable")

    async def wait_ready(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 - the start-up deadline
        """Poll the sidecar until it answers (never blocks the event loop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.1
        while not await self.healthy():
            if loop.time() > deadline:
                raise Unavailable("the Dapr sidecar did not become ready")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # ---- state ----------------------------------------------------------------------------

    async def get_state(self, store: str, key: str) -> StateItem | None:
        response = await self._request(
            "GET", f"/v1.0/state/{store}/{quote(key, safe='')}", params={"consistency": "strong"}
        )
        if response.status_code == 204 or not response.content:
            return None
        _raise_for(response)
        return StateItem(key=key, value=response.json(), etag=response.headers.get("etag"))

    async def get_bulk(self, store: str, keys: list[str]) -> dict[str, StateItem]:
        if not keys:
            return {}
        response = await self._request("POST", f"/v1.0/state/{store}/bulk", json={"keys": keys, "parallelism": 16})
        _raise_for(response)
        found: dict[str, StateItem] = {}
        for entry in response.json():
            if entry.get("error"):
                raise Unavailable("the state store could not read every key")
            if "data" in entry and entry["data"] is not None:
                data = entry["data"]
                if isinstance(data, str):
                    # Some stores hand back the JSON document as a string.
                    try:
                        data = json.loads(data)
                    except ValueError:
                        pass
                found[entry["key"]] = StateItem(key=entry["key"], value=data, etag=entry.get("etag"))
        return found

    async def transact(self, store: str, operations: list[Upsert | Delete]) -> None:
        """Apply every operation atomically; Conflict if any ETag (or create-only key) does not hold."""
        ops: list[dict[str, Any]] = []
        for op in operations:
            if isinstance(op, Upsert):
                metadata = {"contentType": "application/json"}
                if op.ttl_seconds is not None:
                    metadata["ttlInSeconds"] = str(op.ttl_seconds)
                request: dict[str, Any] = {"key": op.key, "value": op.value, "metadata": metadata}
                if op.etag is not None:
                    request["etag"] = op.etag
                if op.first_write:
                    request["options"] = {"concurrency": "first-write", "consistency": "strong"}
                ops.append({"operation": "upsert", "request": request})
            else:
                request = {"key": op.key}
                if op.etag is not None:
                    request["etag"] = op.etag
                    request["options"] = {"concurrency": "first-write", "consistency": "strong"}
                ops.append({"operation": "delete", "request": request})
        response = await self._request(
            "POST", f"/v1.0/state/{store}/transaction", json={"operations": ops}, idempotent=False
        )
        _raise_for(response)

    # ---- pub/sub --------------------------------------------------------------------------

    async def publish(
        self,
        pubsub: str,
        topic: str,
        data: dict[str, Any],
        *,
        partition_key: str,
        event_id: str,
        event_type: str,
        traceparent: str | None = None,
    ) -> None:
        params = {
            "metadata.partitionKey": partition_key,
            "metadata.cloudevent.id": event_id,
            "metadata.cloudevent.type": event_type,
        }
        headers = {"traceparent": traceparent} if traceparent else {}
        response = await self._request(
            "POST", f"/v1.0/publish/{pubsub}/{topic}", params=params, json=data, headers=headers
        )
        _raise_for(response)

    # ---- jobs -----------------------------------------------------------------------------

    async def schedule_job(self, name: str, *, due_time: str, data: dict[str, Any]) -> None:
        body = {"dueTime": due_time, "repeats": 1, "data": data, "overwrite": True}
        response = await self._request("POST", f"/v1.0/jobs/{quote(name, safe='')}", json=body)
        _raise_for(response)

    async def delete_job(self, name: str) -> None:
        response = await self._request("DELETE", f"/v1.0/jobs/{quote(name, safe='')}")
        if response.status_code in (404, 204, 200):
            return
        if response.status_code == 500 and "not found" in response.text.lower():
            return
        _raise_for(response)

    # ---- secrets and invocation -----------------------------------------------------------

    async def get_secret(self, store: str, name: str) -> dict[str, str]:
        response = await self._request("GET", f"/v1.0/secrets/{store}/{quote(name, safe='')}")
        _raise_for(response)
        return {str(k): str(v) for k, v in response.json().items()}

    async def invoke(
        self,
        app_id: str,
        method: str,
        *,
        body: dict[str, Any],
        http_method: str = "POST",
        traceparent: str | None = None,
    ) -> httpx2.Response:
        """Call `method` on app `app_id` through the sidecars (service invocation). The app's
        answer comes back as it is; only an unreachable sidecar or app (5xx after the retries)
        raises Unavailable."""
        headers = {"traceparent": traceparent} if traceparent else {}
        return await self._request(
            http_method, f"/v1.0/invoke/{app_id}/method/{method.lstrip('/')}", json=body, headers=headers
        )


def _is_etag_error(response: httpx2.Response) -> bool:
    """409, or the 500 a store gives when an ETag or create-only (first-write, no ETag) write
    matched no row: state.postgresql reports "no item was updated" for the latter."""
    if response.status_code == 409:
        return True
    if response.status_code == 500:
        text = response.text.lower()
        return "etag" in text or "no item was updated" in text
    return False


def _raise_for(response: httpx2.Response) -> None:
    if response.status_code < 300:
        return
    if _is_etag_error(response):
        raise Conflict("a concurrent change won; retry")
    if response.status_code in (401, 403):
        raise Unavailable("the Dapr sidecar refused this app (check the API token and scopes)")
    raise Unavailable(f"the Dapr sidecar answered {response.status_code}")
