"""Live streams as Server-Sent Events: a user's notifications, and a user's task changes.

Authentication: `Authorization: Bearer <token>` (a fetch-based reader can send it). Browsers'
EventSource cannot set headers, so `?access_token=<token>` is accepted too; access logs never
contain the query string (the request log records the route template only). A stream ends
with `event: closed` (data `{"reason": ...}`) when its token expires, when the client falls too
far behind, or when the server shuts down; the client reconnects (with a fresh token) and refetches.

Notifications carry their inbox id as the SSE `id`; a client reconnecting with `Last-Event-ID`
first receives what it missed from the inbox.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from doable.domain.query import INT64_MAX
from doable.platform.auth import Identity, InvalidToken
from doable.platform.logs import bind
from doable.usecases.inbox import Inbox
from doable.usecases.live import Closed, Kind, LiveEvent, LiveHub, TooManyStreams
from doable.web.deps import VerifierDep, WebDeps, WebDepsDep
from doable.web.errors import error_body

router = APIRouter(prefix="/api", tags=["live"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "A stream of Server-Sent Events"},
    401: {"description": "Missing or invalid token"},
    429: {"description": "This user already holds the most live streams allowed"},
}
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
REPLAY_MAX = 200
_ASCII_ID = re.compile(r"[0-9]{1,19}")


async def stream_user(
    request: Request,
    verifier: VerifierDep,
    access_token: Annotated[
        # No max_length here: an oversized token is a bad token (401 from the verifier), like in the header.
        str | None, Query(description="For EventSource, which cannot send headers.")
    ] = None,
) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        raw = token.strip()
    elif access_token:
        raw = access_token
    else:
        raise InvalidToken("missing bearer token")
    identity: Identity = await verifier.verify(raw)
    bind(user_id=identity.user_id)
    return identity


StreamUser = Annotated[Identity, Depends(stream_user)]


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


@router.get("/notifications/stream", responses=RESPONSES)
async def notification_stream(
    deps: WebDepsDep,
    user: StreamUser,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Response:
    """Your notifications as they arrive (`event: notification`), for browser notifications."""
    return _response(deps, user, frozenset({"notification"}), replay_after=event_id(last_event_id))


@router.get("/updates/stream", responses=RESPONSES)
async def update_stream(deps: WebDepsDep, user: StreamUser) -> Response:
    """Your task changes as they happen (`event: task`), to keep open clients in sync."""
    return _response(deps, user, frozenset({"task"}), replay_after=None)


def _response(deps: WebDeps, user: Identity, kinds: frozenset[Kind], replay_after: int | None) -> Response:
    limit = deps.settings.live_streams_per_user
    if deps.live.connections(user.user_id) >= limit:
        return JSONResponse(
            error_body("too_many_streams", str(TooManyStreams(limit))), status_code=429, headers={"Retry-After": "5"}
        )
    exp = user.claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) else None
    body = _events(
        deps.live,
        deps.inbox,
        user.user_id,
        kinds,
        replay_after=replay_after,
        keepalive=deps.settings.sse_keepalive_seconds,
        expires_at=expires_at,
        limit=limit,
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=HEADERS)


async def _events(
    hub: LiveHub,
    inbox: Inbox | None,
    user_id: str,
    kinds: frozenset[Kind],
    *,
    replay_after: int | None,
    keepalive: float,
    expires_at: float | None,
    limit: int | None = None,
) -> AsyncIterator[str]:
    # Connect before replaying, so nothing published meanwhile falls between the two.
    try:
        async with hub.connect(user_id, kinds, limit=limit) as stream:
            yield "retry: 3000\n\n"
            replayed = -1
            if replay_after is not None and inbox is not None:
                for note in await inbox.since(user_id, replay_after, REPLAY_MAX):
                    replayed = note.id
                    yield sse("notification", note.to_data(), str(note.id))
            while True:
                timeout = keepalive
                if expires_at is not None:
                    left = expires_at - time.time()
                    if left <= 0:
                        yield sse("closed", {"reason": "token expired"})
                        return
                    timeout = min(timeout, left)
                try:
                    async with asyncio.timeout(timeout):
                        event = await stream.next()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if isinstance(event, Closed):
                    yield sse("closed", {"reason": event.reason})
                    return
                if _already_replayed(event, replayed):
                    continue
                yield sse(event.kind, event.data, event.id)
    except TooManyStreams as exc:
        # Streams opened at the same instant can all pass the route's check; the hub's is exact.
        yield sse("closed", {"reason": str(exc)})


def event_id(text: str | None) -> int | None:
    """A notification id from `Last-Event-ID`: ASCII digits that fit a signed 64-bit id, else
    None (no replay). str.isdigit() would also take other scripts' digits and superscripts."""
    if text is None or not _ASCII_ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


def _already_replayed(event: LiveEvent, replayed: int) -> bool:
    note_id = event_id(event.id) if event.kind == "notification" else None
    return note_id is not None and note_id <= replayed
