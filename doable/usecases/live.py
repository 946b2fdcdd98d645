"""Live updates for connected clients: the API process's fan-out of `task-updates` and
`notifications` to each user's open streams (served as Server-Sent Events by doable.web.live).

The hub is per process and in memory. Events are routed by the user id inside the event, and a
stream only ever receives its own user's events. A stream that cannot keep up is closed rather
than allowed to grow without bound; the client reconnects and refetches.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import structlog

from doable.platform import topology
from doable.platform.metrics import LIVE_CONNECTIONS, NOTIFICATIONS_DELIVERED
from doable.ports.messages import Message, Outcome, Subscription, one_by_one

log = structlog.get_logger("doable.usecases.live")

Kind = Literal["task", "notification"]
QUEUE_SIZE = 256
# Notification ids already pushed, per connected user: a redelivered notification is not shown twice.
RECENT_IDS = 512


@dataclass(frozen=True)
class LiveEvent:
    kind: Kind
    id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Closed:
    """The stream ends here; the client should reconnect (and refetch what it shows)."""

    reason: str


class TooManyStreams(Exception):
    """The user already holds the most live streams allowed (settings.live_streams_per_user)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} live streams per user are allowed; close one first")
        self.limit = limit


class Stream:
    """One connected client of one user."""

    def __init__(self, user_id: str, kinds: frozenset[Kind]) -> None:
        self.user_id = user_id
        self.kinds = kinds
        self._queue: asyncio.Queue[LiveEvent | Closed] = asyncio.Queue(QUEUE_SIZE + 1)
        self.closed = False

    def offer(self, event: LiveEvent) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= QUEUE_SIZE:
            self.close("fell behind")
            return
        self._queue.put_nowait(event)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(Closed(reason))  # the extra slot is kept for this

    async def next(self) -> LiveEvent | Closed:
        return await self._queue.get()


class LiveHub:
    def __init__(self) -> None:
        self._streams: dict[str, set[Stream]] = {}
        self._recent: dict[str, OrderedDict[str, None]] = {}

    @asynccontextmanager
    async def connect(self, user_id: str, kinds: frozenset[Kind], *, limit: int | None = None) -> AsyncIterator[Stream]:
        """A stream of the user's events; TooManyStreams when the user already holds `limit`."""
        if limit is not None and self.connections(user_id) >= limit:
            raise TooManyStreams(limit)
        stream = Stream(user_id, kinds)
        self._streams.setdefault(user_id, set()).add(stream)
        LIVE_CONNECTIONS.inc()
        try:
            yield stream
        finally:
            LIVE_CONNECTIONS.dec()
            streams = self._streams.get(user_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[user_id]
                    self._recent.pop(user_id, None)

    def connections(self, user_id: str) -> int:
        return len(self._streams.get(user_id, ()))

    def close_all(self, reason: str) -> None:
        """End every open stream (the server is shutting down: open streams would hold it up)."""
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.close(reason)

    def push(self, user_id: str, event: LiveEvent) -> int:
        """Offer `event` to the user's streams that want its kind; how many took it."""
        taken = 0
        for stream in list(self._streams.get(user_id, ())):
            if event.kind in stream.kinds:
                stream.offer(event)
                taken += 1
        return taken

    def first_time(self, user_id: str, event_id: str) -> bool:
        recent = self._recent.setdefault(user_id, OrderedDict())
        if event_id in recent:
            return False
        recent[event_id] = None
        if len(recent) > RECENT_IDS:
            recent.popitem(last=False)
        return True

    async def on_task_update(self, message: Message) -> Outcome:
        user_id = message.data.get("user_id")
        if not isinstance(user_id, str):
            return Outcome.DROP
        data = {
            "event_type": message.data.get("event_type"),
            "task_id": message.data.get("task_id"),
            "task": message.data.get("task_data"),
            "timestamp": message.data.get("timestamp"),
        }
        self.push(user_id, LiveEvent(kind="task", id=message.id, data=data))
        return Outcome.SUCCESS

    async def on_notification(self, message: Message) -> Outcome:
        user_id = message.data.get("user_id")
        note_id = message.data.get("id")
        if not isinstance(user_id, str) or not isinstance(note_id, int):
            return Outcome.DROP
        if not self.connections(user_id):
            return Outcome.SUCCESS  # nobody to tell; the inbox has it
        if self.first_time(user_id, str(note_id)) and self.push(
            user_id, LiveEvent(kind="notification", id=str(note_id), data=message.data)
        ):
            NOTIFICATIONS_DELIVERED.labels(channel="live").inc()
        return Outcome.SUCCESS

    def subscriptions(self) -> tuple[Subscription, ...]:
        """The API app's subscriptions (topology.SUBSCRIPTIONS[API_APP_ID])."""
        # Batch handlers (each message pushed in turn): in Dapr mode that declares bulk subscribe,
        # one delivery per bulk instead of one request to every API replica per task change.
        return (
            Subscription(
                topic=topology.TASK_UPDATES,
                handler=self.on_task_update,
                name="live-task-updates",
                batch_handler=partial(one_by_one, self.on_task_update),
            ),
            Subscription(
                topic=topology.NOTIFICATIONS,
                handler=self.on_notification,
                name="live-notifications",
                batch_handler=partial(one_by_one, self.on_notification),
            ),
        )
