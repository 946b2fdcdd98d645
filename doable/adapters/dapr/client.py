"""A thin async client for the Dapr sidecar's HTTP API (v1.0).

Why not the SDK: `DaprClient()` blocks up to 60 s in its constructor waiting for the
sidecar, even the aio client. This client never blocks the event loop, retries
transient failures a bounded number of times with backoff, and turns what the
sidecar says into domain errors: 409 (ETag mismatch) -> Conflict, unreachable or
5xx after retries -> Unavailable.

Supported Dapr runtimes: 1.16, 1.17 and 1.18. They differ, for Doable, only in where the
Jobs API lives: 1.18 added the stable `/v1.0/jobs/{name}` and kept `/v1.0-alpha1/jobs/{name}`;
1.16 and 1.17 serve only the alpha path (dapr/dapr `pkg/api/http/jobs.go` at v1.16.19,
v1.17.13, v1.18.3). The client picks the path from the sidecar's `runtimeVersion`
(`GET /v1.0/metadata`) and, should that be missing or wrong, from the answer daprd gives a
path it does not serve.

Timeouts: daprd's resiliency timeout does not stop the operation it times out
(`pkg/resiliency/policy.go` runs it in a goroutine and returns `ctx.Err()`), and a state
transaction keeps the request's own context (`pkg/api/http/http.go`, onPostStateTransaction),
so a transaction the sidecar reports as timed out may still commit. This client therefore
never repeats a transaction once the sidecar may have started it, and its own timeouts
(`timeout`, `publish_timeout`, `invoke_timeout`) are meant to outlive the sidecar's budget for
the same call (the chart derives both from one set of values; tests/deploy checks it).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any
from urllib.parse import quote

import httpx2
import structlog

from doable.adapters.dapr.api_paths import JOBS_ALPHA, JOBS_STABLE, bulk_publish_path_for, jobs_path_for
from doable.adapters.dapr.operations import BulkEntry, Delete, StateItem, Upsert
from doable.adapters.dapr.sidecar_errors import (
    failed_entries,
    is_etag_error,
    outcome_unknown,
    raise_for,
    unserved_route,
)
from doable.adapters.dapr.sidecar_http import SidecarHttp
from doable.domain.errors import Unavailable

log = structlog.get_logger("doable.dapr")


class DaprClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:3500",
        *,
        api_token: str | None = None,
        timeout: float = 10.0,
        publish_timeout: float | None = None,
        invoke_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.05,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """`timeout` bounds state, jobs, secrets and metadata calls; `publish_timeout` and
        `invoke_timeout` (default: `timeout`) bound publishes and service invocations, whose
        sidecar-side retries can take longer."""
        headers = {"dapr-api-token": api_token} if api_token else {}
        self._http = SidecarHttp(base_url, headers=headers, timeout=timeout, transport=transport)
        self._retries = retries
        self._backoff = backoff
        self._publish_timeout = publish_timeout or timeout
        self._invoke_timeout = invoke_timeout or timeout
        self._jobs_path: str | None = None
        self._bulk_publish_path: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, retry: bool = True, idempotent: bool = True, **kwargs: Any
    ) -> httpx2.Response:
        """Send one call, retried a bounded number of times with backoff; Unavailable after that.

        A call that is not `idempotent` (a state transaction) is not repeated once it may have
        reached the sidecar without an answer (a read timeout, a dropped connection): it may have
        committed, and repeating it could not tell. Refused connections and 5xx answers (the
        sidecar says it did nothing) are retried, except a 5xx that says the sidecar gave up
        waiting (its resiliency timeout): the operation may still be running, and may commit."""
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
                if is_etag_error(response):
                    return response
                last = RuntimeError(f"sidecar answered {response.status_code}")
                if not idempotent and outcome_unknown(response):
                    log.warning("dapr.outcome_unknown", method=method, path=path.split("?")[0], error=str(last))
                    raise Unavailable("the Dapr sidecar did not answer in time; try again shortly") from last
            if attempt + 1 < attempts:
                # Full jitter keeps a crowd of retries from arriving together.
                await asyncio.sleep(random.uniform(0, self._backoff * 2**attempt))
        log.warning("dapr.unavailable", method=method, path=path.split("?")[0], error=str(last))
        raise Unavailable("the Dapr sidecar is unavailable; try again shortly") from last

    # ---- health ---------------------------------------------------------------------------

    async def healthy(self) -> bool:
        try:
            response = await self._http.request("GET", "/v1.0/healthz/outbound", timeout=2.0)
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
        raise_for(response)
        return StateItem(key=key, value=response.json(), etag=response.headers.get("etag"))

    async def get_bulk(self, store: str, keys: list[str]) -> dict[str, StateItem]:
        if not keys:
            return {}
        response = await self._request("POST", f"/v1.0/state/{store}/bulk", json={"keys": keys, "parallelism": 16})
        raise_for(response)
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
        raise_for(response)

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
            "POST",
            f"/v1.0/publish/{pubsub}/{topic}",
            params=params,
            json=data,
            headers=headers,
            timeout=self._publish_timeout,
        )
        raise_for(response)

    async def publish_bulk(self, pubsub: str, topic: str, entries: list[BulkEntry]) -> set[str]:
        """Publish `entries` in one call (daprd `onBulkPublish`); the event ids the sidecar reports
        as failed (`failedEntries` of its 500 answer), empty when all were published. Not retried
        here: a retry would publish the entries that went through again; the relay retries the
        failed ones. Unavailable when the sidecar cannot be reached or refuses the whole call."""
        if not entries:
            return set()
        if self._bulk_publish_path is None:
            self._bulk_publish_path = bulk_publish_path_for(await self.runtime_version())
            log.info("dapr.bulk_publish_api", path=self._bulk_publish_path)
        body = [
            {
                "entryId": str(i),
                "event": e.data,
                "contentType": "application/json",
                "metadata": {
                    "partitionKey": e.partition_key,
                    "cloudevent.id": e.event_id,
                    "cloudevent.type": e.event_type,
                    **({"cloudevent.traceparent": e.traceparent} if e.traceparent else {}),
                },
            }
            for i, e in enumerate(entries)
        ]
        path = f"{self._bulk_publish_path}/{quote(pubsub, safe='')}/{quote(topic, safe='')}"
        try:
            response = await self._http.request("POST", path, json=body, timeout=self._publish_timeout)
        except (httpx2.TransportError, httpx2.TimeoutException) as exc:
            log.warning("dapr.unavailable", method="POST", path=path, error=str(exc))
            raise Unavailable("the Dapr sidecar is unavailable; try again shortly") from exc
        if response.status_code < 300:
            return set()
        if response.status_code == 500:
            failed = failed_entries(response)
            if failed:
                return {entries[int(i)].event_id for i in failed if i.isdigit() and int(i) < len(entries)}
        raise_for(response)
        return set()

    # ---- jobs -----------------------------------------------------------------------------

    async def runtime_version(self) -> str | None:
        """The sidecar's Dapr version (`runtimeVersion` of `GET /v1.0/metadata`), or None."""
        response = await self._request("GET", "/v1.0/metadata")
        if response.status_code != 200:
            return None
        try:
            version = response.json().get("runtimeVersion")
        except (ValueError, AttributeError):
            return None
        return version if isinstance(version, str) else None

    async def jobs_path(self) -> str:
        """Where this sidecar serves the Jobs API (asked once, then remembered)."""
        if self._jobs_path is None:
            self._jobs_path = jobs_path_for(await self.runtime_version())
            log.info("dapr.jobs_api", path=self._jobs_path)
        return self._jobs_path

    async def _jobs_request(self, method: str, name: str, **kwargs: Any) -> httpx2.Response:
        path = await self.jobs_path()
        response = await self._request(method, f"{path}/{quote(name, safe='')}", **kwargs)
        if unserved_route(response):
            # This daprd does not serve that path after all: use the other one from now on.
            self._jobs_path = JOBS_ALPHA if path == JOBS_STABLE else JOBS_STABLE
            log.warning("dapr.jobs_api_switched", path=self._jobs_path)
            response = await self._request(method, f"{self._jobs_path}/{quote(name, safe='')}", **kwargs)
        return response

    async def schedule_job(self, name: str, *, due_time: str, data: dict[str, Any]) -> None:
        body = {"dueTime": due_time, "repeats": 1, "data": data, "overwrite": True}
        response = await self._jobs_request("POST", name, json=body)
        raise_for(response)

    async def delete_job(self, name: str) -> None:
        response = await self._jobs_request("DELETE", name)
        if response.status_code in (404, 204, 200):
            return
        if response.status_code == 500 and "not found" in response.text.lower():
            return
        raise_for(response)

    # ---- secrets and invocation -----------------------------------------------------------

    async def get_secret(self, store: str, name: str) -> dict[str, str]:
        response = await self._request("GET", f"/v1.0/secrets/{store}/{quote(name, safe='')}")
        raise_for(response)
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
            http_method,
            f"/v1.0/invoke/{app_id}/method/{method.lstrip('/')}",
            json=body,
            headers=headers,
            timeout=self._invoke_timeout,
        )

