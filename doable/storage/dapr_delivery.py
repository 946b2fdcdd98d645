"""Processed-message records (idempotent consumers) in the Dapr state store.

    processed:{consumer}:{message id}     {"at": ...}   written with ttlInSeconds

The state store expires the records itself (state.postgresql and state.redis honour
`ttlInSeconds`), so `prune` has nothing to do; the TTL is the Deduplicator's window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from doable.dapr.client import DaprClient, Upsert
from doable.storage.dapr_docs import part


def processed_key(consumer: str, message_id: str) -> str:
    return f"processed:{part(consumer)}:{part(message_id)}"


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

    async def prune(self, before: datetime) -> int:
        return 0  # the store's TTL forgets old records
