"""The HTTP connection to the Dapr sidecar.

A sidecar on a real address is reached with aiohttp: under load the API makes several sidecar
calls per request, and httpx2's per-request machinery (request building, auth and redirect
handling, its connection pool) cost about five times aiohttp's CPU per call, measured on this
machine, which made the client the largest item of the API's profile. aiohttp is already
installed with Doable: the Dapr SDK depends on it. An in-process transport (tests, benches:
an `httpx2.ASGITransport` around the sidecar double) keeps httpx2.

Either way a call answers an `httpx2.Response` and fails with httpx2's exceptions, so what a
failure means is decided in one place (`DaprClient._request`): `httpx2.ConnectError` and
`httpx2.ConnectTimeout` say the request was never sent; any other `httpx2.TransportError` says
it may have reached the sidecar.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx2
import yarl

# The sidecar client's connections: as many as httpx2's default pool, and all of them kept
# alive (httpx2 kept 20, so a burst of 50 calls opened and closed the rest on every burst).
MAX_CONNECTIONS = 100
# Below the idle timeout of the servers in front of it (uvicorn's 5 s in the sidecar double), so
# a connection the server is about to close is not reused for a call.
KEEPALIVE_SECONDS = 4.0


class SidecarHttp:
    """Send requests to one sidecar; aiohttp for a real address, httpx2 for a given transport."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._httpx = (
            httpx2.AsyncClient(base_url=base_url, headers=self._headers, timeout=timeout, transport=transport)
            if transport is not None
            else None
        )
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def aclose(self) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _current_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop or self._session.closed:
            # A session belongs to the loop it was made on (a client used from a new loop gets its own).
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
            self._session_loop = loop
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per call, as httpx2's; the caller's budget
    ) -> httpx2.Response:
        """One call; `path` is already quoted, `json` (if not None) is sent as the JSON body."""
        if self._httpx is not None:
            return await self._httpx.request(
                method,
                path,
                params=params,
                json=json,
                headers=headers,
                timeout=timeout if timeout is not None else httpx2.USE_CLIENT_DEFAULT,
            )
        sent = dict(headers or {})
        body: bytes | None = None
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent["Content-Type"] = "application/json"
        seconds = timeout if timeout is not None else self._timeout
        # As httpx2's timeout: each phase (a connection from the pool, connecting, every read) gets
        # the whole budget, rather than the call as a whole.
        budget = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
        url = yarl.URL(self._base + path, encoded=True)
        try:
            async with self._current_session().request(
                method, url, params=params, data=body, headers=sent, timeout=budget
            ) as answer:
                content = await answer.read()
                return httpx2.Response(answer.status, headers=answer.raw_headers, content=content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx2.ConnectTimeout(str(exc) or "timed out connecting to the sidecar") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc)) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx2.ReadTimeout(str(exc) or "the sidecar did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__) from exc
