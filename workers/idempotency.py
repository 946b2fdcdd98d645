"""Idempotent consumers: a handler runs at most once per (consumer, message id) that succeeded.

Brokers deliver at least once (a lost acknowledgement, a rebalance, the outbox relay after a
crash). Each handler's own writes are keyed so a repeat is harmless; this record also skips the
work itself, and is pruned after a TTL longer than any redelivery window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from doable.domain.clock import Clock
from doable.messaging import Handler, Message, Outcome

log = structlog.get_logger("doable.workers")

PRUNE_EVERY = timedelta(hours=1)


class ProcessedMessages(Protocol):
    async def seen(self, consumer: str, message_id: str) -> bool: ...

    async def remember(self, consumer: str, message_id: str, at: datetime) -> None: ...

    async def prune(self, before: datetime) -> int:
        """Forget records older than `before`; how many went."""
        ...


def never(_: Message) -> bool:
    """For handlers that are idempotent by themselves (see Deduplicator.wrap)."""
    return False


class Deduplicator:
    def __init__(self, store: ProcessedMessages, clock: Clock, *, ttl: timedelta) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._pruned_at: datetime | None = None

    def wrap(
        self, consumer: str, handler: Handler, *, needs_record: Callable[[Message], bool] | None = None
    ) -> Handler:
        """`handler`, skipping messages `consumer` already handled successfully.

        `needs_record` says which messages need that record; the others go straight to the
        handler, because repeating it is harmless: it does nothing with them, its writes are keyed
        by the message id, or it converges to a state it reads afresh. The record costs two
        transactions per message, most of a light handler's cost."""

        async def deduplicated(message: Message) -> Outcome:
            if needs_record is not None and not needs_record(message):
                return await handler(message)
            if await self._store.seen(consumer, message.id):
                log.info("events.duplicate_skipped", consumer=consumer, message_id=message.id)
                return Outcome.SUCCESS
            outcome = await handler(message)
            if outcome is Outcome.SUCCESS:
                await self._store.remember(consumer, message.id, self._clock.now())
                await self._maybe_prune()
            return outcome

        return deduplicated

    async def _maybe_prune(self) -> None:
        now = self._clock.now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        removed = await self._store.prune(now - self._ttl)
        if removed:
            log.info("events.processed_pruned", removed=removed)
