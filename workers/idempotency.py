"""Idempotent consumers: a handler runs at most once per (consumer, message id) that succeeded.

Brokers deliver at least once (a lost acknowledgement, a rebalance, the outbox relay after a
crash). Each handler's own writes are keyed so a repeat is harmless; this record also skips the
work itself, and is pruned after a TTL longer than any redelivery window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog

from doable.domain.clock import Clock
from doable.ports import ProcessedMessages
from doable.ports.messages import BatchHandler, Handler, Message, Outcome

log = structlog.get_logger("doable.workers")

PRUNE_EVERY = timedelta(hours=1)


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

    def wrap_batch(
        self, consumer: str, handler: BatchHandler, *, needs_record: Callable[[Message], bool] | None = None
    ) -> BatchHandler:
        """The batch form of `wrap`: one read of the batch's records, the handler on the messages
        not yet handled, one write of the records of those that succeeded (2 round trips per batch,
        whatever its size). A batch whose messages need no record goes straight to the handler."""

        async def deduplicated(messages: Sequence[Message]) -> list[Outcome]:
            recorded = [m.id for m in messages if needs_record is None or needs_record(m)]
            if not recorded:
                return await handler(messages)
            seen = await self._store.seen_many(consumer, recorded)
            if seen:
                log.info("events.duplicates_skipped", consumer=consumer, count=len(seen))
            fresh = [m for m in messages if m.id not in seen]
            answered = await handler(fresh) if fresh else []
            by_id = dict(zip((m.id for m in fresh), answered, strict=False))
            outcomes: list[Outcome] = []
            for m in messages:
                if m.id in seen:
                    outcomes.append(Outcome.SUCCESS)
                elif m.id in by_id:
                    outcomes.append(by_id[m.id])
                else:
                    break  # not attempted (see BatchHandler): neither are the ones after it
            done = [m.id for m, o in zip(messages, outcomes, strict=False) if o is Outcome.SUCCESS and m.id not in seen]
            keep = {m.id for m in messages if needs_record is None or needs_record(m)}
            done = [m for m in done if m in keep]
            if done:
                await self._store.remember_many(consumer, done, self._clock.now())
                await self._maybe_prune()
            return outcomes

        return deduplicated

    async def _maybe_prune(self) -> None:
        now = self._clock.now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        removed = await self._store.prune(now - self._ttl)
        if removed:
            log.info("events.processed_pruned", removed=removed)
