"""The outbox relay for the Dapr state store: publishes each user's events in order, then
advances that user's tail. At-least-once: a crash between publish and advance republishes,
and consumers deduplicate on the event id."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from doable.dapr.client import DaprClient, Delete, Upsert
from doable.domain.errors import Conflict, DoableError
from doable.domain.events import TaskEvent
from doable.messaging import EventPublisher
from doable.metrics import EVENTS_PUBLISHED, OUTBOX_DEPTH
from doable.storage.dapr_state import DIRTY_SHARDS, dirty_key, dirty_shard_key, meta_key, outbox_key
from doable.topology import TASK_EVENTS, TASK_UPDATES

log = structlog.get_logger("doable.outbox")


class DaprOutbox:
    def __init__(self, client: DaprClient, store: str, publisher: EventPublisher, *, batch: int = 100) -> None:
        self._client = client
        self._store = store
        self._publisher = publisher
        self._batch = batch
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """A commit happened: drain now rather than at the next poll."""
        self._wake.set()

    async def pending(self, user_id: str) -> list[TaskEvent]:
        meta = await self._client.get_state(self._store, meta_key(user_id))
        if meta is None:
            return []
        tail, head = int(meta.value["outbox_tail"]), int(meta.value["outbox_head"])
        found = await self._client.get_bulk(self._store, [outbox_key(user_id, s) for s in range(tail, head)])
        return [TaskEvent.model_validate(found[outbox_key(user_id, s)].value) for s in range(tail, head) if outbox_key(user_id, s) in found]

    async def dirty_users(self) -> list[str]:
        shards = await self._client.get_bulk(self._store, [dirty_shard_key(n) for n in range(DIRTY_SHARDS)])
        return sorted({u for item in shards.values() for u in item.value.get("users", [])})

    async def drain(self, limit: int | None = None) -> int:
        """Publish what is pending (at most `limit` events per user); the number published."""
        published = 0
        depth = 0
        for user in await self.dirty_users():
            try:
                sent, left = await self._drain_user(user, limit or self._batch)
            except Conflict:
                sent, left = 0, 1  # a writer appended meanwhile; the next round picks it up
            published += sent
            depth += left
        OUTBOX_DEPTH.set(depth)
        return published

    async def _drain_user(self, user: str, batch: int) -> tuple[int, int]:
        meta = await self._client.get_state(self._store, meta_key(user))
        if meta is None:
            return 0, 0
        tail, head = int(meta.value["outbox_tail"]), int(meta.value["outbox_head"])
        upto = min(head, tail + batch)
        keys = [outbox_key(user, s) for s in range(tail, upto)]
        found = await self._client.get_bulk(self._store, keys)
        for key in keys:
            if key not in found:
                continue
            event = TaskEvent.model_validate(found[key].value)
            data = event.model_dump(mode="json")
            for topic in (TASK_EVENTS, TASK_UPDATES):
                await self._publisher.publish(topic, data, key=user, event_id=event.event_id, trace_id=event.trace_id)
                EVENTS_PUBLISHED.labels(topic=topic).inc()
        new_meta = {**meta.value, "outbox_tail": upto}
        ops: list[Upsert | Delete] = [Upsert(meta_key(user), new_meta, etag=meta.etag)]
        ops += [Delete(k) for k in keys]
        if upto == head:
            shard_key = dirty_key(user)
            shard = await self._client.get_state(self._store, shard_key)
            if shard is not None:
                users = [u for u in shard.value.get("users", []) if u != user]
                ops.append(Upsert(shard_key, {"users": users}, etag=shard.etag))
        await self._client.transact(self._store, ops)
        return len(keys), head - upto

    async def run(self, poll_seconds: float = 1.0) -> None:
        while True:
            try:
                while await self.drain():
                    pass
            except DoableError as exc:
                log.warning("outbox.drain_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_seconds)
            self._wake.clear()

