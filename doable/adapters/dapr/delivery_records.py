"""Delivery bookkeeping in the Dapr state store: processed-message records (idempotent
consumers) and dead letters.

    processed:{consumer}:{message id}       {"at": ...}   written with ttlInSeconds
    dead-letter:{subscription}:{message id}  {"subscription", "topic", "message_id", "key",
                                              "data", "reason", "attempts", "at"}

The state store expires processed records itself (state.postgresql and state.redis honour
`ttlInSeconds`), so `prune` has nothing to do; the TTL is the Deduplicator's window. Dead letters
have no TTL: they stay until an operator deals with them (with state.postgresql, the rows of
`doable_state` whose key starts with `statestore||dead-letter:`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.documents import part
from doable.adapters.dapr.operations import Delete, Upsert
from doable.domain.errors import Conflict


def processed_key(consumer: str, message_id: str) -> str:
    return f"processed:{part(consumer)}:{part(message_id)}"


def dead_letter_key(subscription: str, message_id: str) -> str:
    return f"dead-letter:{part(subscription)}:{part(message_id)}"


class DaprProcessedMessages:
    def __init__(self, client: DaprClient, store: str, *, ttl: timedelta) -> None:
        self._client = client
        self._store = store
        self._ttl_seconds = max(1, int(ttl.total_seconds()))

    async def seen(self, consumer: str, message_id: str) -> bool:
        return await self._client.get_state(self._store, processed_key(consumer, message_id)) is not None

    async def remember(self, consumer: str, message_id: str, at: datetime) -> None:
        # Last write wins: remembering twice (a redelivery racing the first) is harmless.
        record = Upsert(
            processed_key(consumer, message_id),
            {"at": at.isoformat()},
            first_write=False,
            ttl_seconds=self._ttl_seconds,
        )
        await self._client.transact(self._store, [record])

    async def seen_many(self, consumer: str, message_ids: list[str]) -> set[str]:
        keys = {processed_key(consumer, m): m for m in message_ids}
        found = await self._client.get_bulk(self._store, list(keys))
        return {keys[k] for k in found}

    async def remember_many(self, consumer: str, message_ids: list[str], at: datetime) -> None:
        if not message_ids:
            return
        records: list[Upsert | Delete] = [
            Upsert(processed_key(consumer, m), {"at": at.isoformat()}, first_write=False, ttl_seconds=self._ttl_seconds)
            for m in dict.fromkeys(message_ids)
        ]
        await self._client.transact(self._store, records)

    async def prune(self, before: datetime) -> int:
        return 0  # the store's TTL forgets old records


class DaprDeadLetters:
    """The DeadLetterSink of Dapr mode (the dead-letter topic's consumer, `workers.dead_letters`)."""

    def __init__(self, client: DaprClient, store: str) -> None:
        self._client = client
        self._store = store

    async def record(
        self,
        *,
        subscription: str,
        topic: str,
        message_id: str,
        key: str,
        data: dict[str, Any],
        reason: str,
        attempts: int,
        at: datetime,
    ) -> bool:
        record = {
            "subscription": subscription,
            "topic": topic,
            "message_id": message_id,
            "key": key,
            "data": data,
            "reason": reason[:2000],
            "attempts": attempts,
            "at": at.isoformat(),
        }
        try:
            # Create-only: the first record of a message stays; a redelivery (or a second copy
            # racing the first) conflicts and changes nothing.
            await self._client.transact(self._store, [Upsert(dead_letter_key(subscription, message_id), record)])
        except Conflict:
            return False
        return True
