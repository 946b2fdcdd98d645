"""The outbox relay for the Dapr state store: publishes each user's events in order, then
advances that user's tail. At-least-once: a crash between publish and advance republishes,
and consumers deduplicate on the event id.

- Which users have unpublished events: the dirty shards (`outbox-dirty:{n}`), which a writer
  joins in the transaction of its first unpublished event (doable.adapters.dapr.state).
- Order: the pending events of every dirty user (up to `batch` each) go out as one bulk
  publish per topic (`task-events`, then `task-updates`; Dapr's bulk publish, one call each;
  a user's events keep their order, under the user's partition key); a failed entry stops
  that user's tail there (the rest are published again next round, so a user's events are
  always delivered in order at least once) and never the other users'.
- Advancing: only the tail moves, after the publishes, guarded by the meta document's ETag.
  A writer that committed meanwhile makes the advance conflict; it is retried on a fresh read
  (the events already published are not published again). The advances run beside the next
  rounds, not before them: the relay remembers how far it published each user (`_sent`), so a
  write is published without waiting for the earlier writes' advances, and a crash before an
  advance republishes (consumers deduplicate on the event id).
- Leaving the dirty shard: lazily. A user whose tail has stood at its head for a while
  (`LEAVE_AFTER` seconds) leaves its shard in one transaction per shard, which also rewrites
  each leaving user's meta unchanged under the ETag it was read with: a writer that committed
  meanwhile makes it conflict (the user stays, and is tried again later), and a writer that
  reads the shard after it sees the user gone and joins again. An active user stays in its
  shard, so neither its writes nor its advances write the shard (before, each caught-up advance
  left it and the next write joined again, and the users sharing a shard conflicted on it).
- Replicas: a user's meta names the relay of the replica that wrote last (`relay_id`, set in
  the writer's own transaction, so it costs no extra call). That relay publishes the user's
  events at once; the others leave them alone until the tail has stood still for the hand-off
  time (that replica died or cannot publish), then take over. Without this, every relay
  published every event (nearly 2x the messages with two replicas). An explicit `drain()`
  publishes everyone's (recovery, tests).
- Polling: a commit in this process wakes the relay at once (`nudge`); polls only look for
  what no nudge announced (another replica's stranded events, a publish that failed). While
  a poll finds nothing pending, the next one waits twice as long, from `poll_seconds` up to
  `idle_max_seconds`, so an idle API reads the state store a few times an hour instead of
  every two seconds (a Neon compute can then suspend). A nudge, or a poll that finds pending
  events (published or not), goes back to `poll_seconds`: another replica's events keep being
  polled at that rate until they are taken over after the hand-off time.
- History: published entries stay for the latest `retain` events of each user, so
  `history()` can answer "what happened recently" (the audit worker keeps the full story).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Mapping
from datetime import datetime

import structlog

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.keys import DIRTY_SHARDS, dirty_key, dirty_shard_key, meta_key, outbox_key
from doable.adapters.dapr.operations import Delete, StateItem, Upsert
from doable.adapters.embedded.relay import publish_task_events
from doable.domain.errors import Conflict
from doable.domain.events import TaskEvent
from doable.platform.metrics import OUTBOX_DEPTH
from doable.ports import EventPublisher, OutboxRecord

log = structlog.get_logger("doable.outbox")

# Published events kept per user for `history()`.
RETAIN = 500
# Users whose tails advance at once (a transaction each).
PARALLEL_USERS = 8
ADVANCE_ATTEMPTS = 8
# Another replica's events are taken over after their tail stood still for this many polls
# (and at least HANDOFF_MIN_SECONDS), so a live writer's own relay always gets there first.
HANDOFF_POLLS = 5
HANDOFF_MIN_SECONDS = 5.0
# A caught-up user leaves its dirty shard after this long without a new event.
LEAVE_AFTER = 2.0


class DaprOutbox:
    def __init__(
        self,
        client: DaprClient,
        store: str,
        publisher: EventPublisher,
        *,
        batch: int = 100,
        retain: int = RETAIN,
        poll_seconds: float = 1.0,
        max_backoff_seconds: float = 10.0,
        idle_max_seconds: float | None = None,
        handoff_seconds: float | None = None,
        leave_after_seconds: float = LEAVE_AFTER,
    ) -> None:
        self._client = client
        self._store = store
        self._publisher = publisher
        self._batch = batch
        self._retain = retain
        self._poll = poll_seconds
        self._max_backoff = max_backoff_seconds
        # Longest wait of an idle relay (default: no idle back-off, one poll every poll_seconds).
        self._idle_max = max(poll_seconds, idle_max_seconds if idle_max_seconds is not None else poll_seconds)
        self._handoff = (
            handoff_seconds if handoff_seconds is not None else max(HANDOFF_MIN_SECONDS, HANDOFF_POLLS * poll_seconds)
        )
        self._leave_after = leave_after_seconds
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Written into the meta of the users this process writes for (DaprUnitOfWorkFactory).
        self.relay_id = uuid.uuid4().hex
        # Other replicas' pending users: user -> (the tail last seen, when it was first seen there).
        self._still: dict[str, tuple[int, float]] = {}
        # Events still pending after the last round (this replica's and other replicas').
        self.left = 0
        # Users published past their stored tail: user -> the seq published up to (advanced
        # beside the next rounds by `_advancing`).
        self._sent: dict[str, int] = {}
        self._advancing: asyncio.Task[None] | None = None
        # Caught-up users still in a dirty shard: user -> when they were first seen caught up.
        self._clean_since: dict[str, float] = {}

    def nudge(self) -> None:
        """A commit happened: drain now rather than at the next poll."""
        self._wake.set()

    # ---- reading ----------------------------------------------------------------------------

    async def _range(self, user_id: str, start: int, end: int) -> list[TaskEvent]:
        keys = [outbox_key(user_id, s) for s in range(start, end)]
        found = await self._client.get_bulk(self._store, keys)
        return [TaskEvent.model_validate(found[k].value) for k in keys if k in found]

    async def pending(self, user_id: str) -> list[TaskEvent]:
        """The user's events not yet published, oldest first."""
        meta = await self._client.get_state(self._store, meta_key(user_id))
        if meta is None:
            return []
        return await self._range(user_id, int(meta.value["outbox_tail"]), int(meta.value["outbox_head"]))

    async def history(self, user_id: str, task_id: int | None = None, limit: int = 50) -> list[TaskEvent]:
        """The user's recent events (published or not, the latest `retain`), newest first."""
        meta = await self._client.get_state(self._store, meta_key(user_id))
        if meta is None:
            return []
        head = int(meta.value["outbox_head"])
        events = await self._range(user_id, max(0, head - self._retain), head)
        mine = [e for e in reversed(events) if task_id is None or e.task_id == task_id]
        return mine[:limit]

    async def dirty_users(self) -> list[str]:
        return _users(await self._dirty_shards())

    async def _dirty_shards(self) -> dict[str, StateItem]:
        return await self._client.get_bulk(self._store, [dirty_shard_key(n) for n in range(DIRTY_SHARDS)])

    async def depth(self) -> int:
        """How many events wait to be published (all users)."""
        users = await self.dirty_users()
        metas = await self._client.get_bulk(self._store, [meta_key(u) for u in users])
        return sum(int(m.value["outbox_head"]) - int(m.value["outbox_tail"]) for m in metas.values())

    # ---- relaying ---------------------------------------------------------------------------

    async def drain(self, limit: int | None = None) -> int:
        """Publish what is pending (at most `limit` events per user); the number published.
        A user whose publish fails keeps its events for the next round."""
        published, _ = await self._drain(limit or self._batch, everyone=True)
        await self._advance_published()
        return published

    async def _drain(self, batch: int, *, everyone: bool) -> tuple[int, int]:
        """(events published, users whose publish failed); `self.left` is then the events still pending.

        One round: the dirty users' metas in one bulk read, their pending events in another, all
        of them in one bulk publish per topic (a user's events in order: they share its
        partition key). The tails advance after the round (`drain`) or beside the next rounds
        (the relay's loop); users caught up for a while leave their dirty shards (`_leave`)."""
        async with self._lock:
            shards = await self._dirty_shards()
            users = _users(shards)
            self._still = {u: seen for u, seen in self._still.items() if u in users}
            self._clean_since = {u: t for u, t in self._clean_since.items() if u in users}
            metas = await self._client.get_bulk(self._store, [meta_key(u) for u in users]) if users else {}
            left = 0
            plan: dict[str, tuple[int, int, int]] = {}  # user -> (tail, publish up to, head)
            caught_up: list[str] = []
            for user in users:
                meta = metas.get(meta_key(user))
                if meta is None:
                    continue
                stored, head = int(meta.value["outbox_tail"]), int(meta.value["outbox_head"])
                # What this relay published already goes out again only if its advance gave up.
                tail = max(stored, min(head, self._sent.get(user, stored)))
                relay = meta.value.get("relay")
                if stored == head:
                    caught_up.append(user)
                elif not everyone and relay not in (None, self.relay_id) and not self._stood_still(user, stored):
                    left += head - stored  # another replica's, and it is still publishing them
                elif head > tail:
                    plan[user] = (tail, min(head, tail + batch), head)
            published = failed = 0
            if plan:
                sent, missed, remaining = await self._publish(plan)
                published, failed, left = sent, missed, left + remaining
            await self._leave(caught_up, shards, metas)
            OUTBOX_DEPTH.set(left)
            self.left = left
            return published, failed

    async def _publish(self, plan: dict[str, tuple[int, int, int]]) -> tuple[int, int, int]:
        """Publish the planned events and advance each user's tail past what went out:
        (events published, users with a failed event, events still pending)."""
        keys = {user: [outbox_key(user, s) for s in range(tail, upto)] for user, (tail, upto, _) in plan.items()}
        found = await self._client.get_bulk(self._store, [k for ks in keys.values() for k in ks])
        chunks = {
            user: [
                (seq, TaskEvent.model_validate(found[key].value))
                for seq, key in zip(range(tail, upto), keys[user], strict=True)
                if key in found
            ]
            for user, (tail, upto, _) in plan.items()
        }
        try:
            missed = await publish_task_events(self._publisher, [e for chunk in chunks.values() for _, e in chunk])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("outbox.publish_failed", users=len(plan), error=f"{type(exc).__name__}: {exc}")
            return 0, len(plan), sum(head - tail for tail, _, head in plan.values())
        # Entries after a failed one may have gone through (the broker takes each on its own): a
        # user's tail stops at its first failed event, and the rest go again, in order, next round.
        done = {
            user: next((seq for seq, event in chunks[user] if event.event_id in missed), upto)
            for user, (_, upto, _) in plan.items()
        }
        failed = {user for user, chunk in chunks.items() if any(e.event_id in missed for _, e in chunk)}
        for user in failed:
            log.warning("outbox.publish_failed", user_id=user, error="some of the user's events were not published")
        for user, (tail, _, head) in plan.items():
            if done[user] > tail:
                self._sent[user] = done[user]
            if done[user] == head:
                self._still.pop(user, None)
        if self._task is not None and (self._advancing is None or self._advancing.done()):
            # The relay's loop runs: advance beside it. (An explicit `drain()` advances itself.)
            self._advancing = asyncio.create_task(self._keep_advancing(), name="doable-dapr-outbox-advance")
        published = sum(done[user] - tail for user, (tail, _, _) in plan.items())
        return published, len(failed), sum(head - done[user] for user, (_, _, head) in plan.items())

    def _stood_still(self, user: str, tail: int) -> bool:
        """Whether another replica's pending events of `user` have waited the hand-off time."""
        now = time.monotonic()
        seen = self._still.get(user)
        if seen is None or seen[0] != tail:
            self._still[user] = (tail, now)
            return False
        return now - seen[1] >= self._handoff

    async def _keep_advancing(self) -> None:
        """`_advance_published` in the background, until nothing is left to advance; a failure
        (the sidecar is down) is retried with back-off, as the relay's rounds are."""
        failures = 0
        while self._sent:
            try:
                await self._advance_published()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("outbox.advance_failed", failures=failures, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(min(self._max_backoff, self._poll * 2 ** (failures - 1)))

    async def _advance_published(self) -> None:
        """Advance the stored tails to what was published, until nothing is left to advance (the
        rounds that run meanwhile add to it). Each user's advance is a transaction of its own (a
        writer of that user may commit meanwhile), their first reads in one bulk read."""
        gate = asyncio.Semaphore(PARALLEL_USERS)

        async def advance(user: str, new_tail: int, read: Mapping[str, StateItem]) -> None:
            async with gate:
                await self._advance(user, new_tail, read)

        while targets := dict(self._sent):
            fresh = await self._client.get_bulk(self._store, [meta_key(u) for u in targets])
            await asyncio.gather(*(advance(u, t, fresh) for u, t in targets.items()))
            for user, new_tail in targets.items():
                if self._sent.get(user) == new_tail:
                    del self._sent[user]  # stored now, or given up (then the next round republishes)

    async def _advance(self, user: str, new_tail: int, read: Mapping[str, StateItem] | None = None) -> None:
        """Move the user's tail to `new_tail` (published up to there), dropping entries that
        fell out of the history window. `read` may hold the user's meta as just read (for the
        first attempt)."""
        for attempt in range(ADVANCE_ATTEMPTS):
            if read is not None and attempt == 0:
                meta = read.get(meta_key(user))
            else:
                meta = await self._client.get_state(self._store, meta_key(user))
            if meta is None or int(meta.value["outbox_tail"]) >= new_tail:
                return
            tail = int(meta.value["outbox_tail"])
            ops: list[Upsert | Delete] = [
                Upsert(meta_key(user), {**meta.value, "outbox_tail": new_tail}, etag=meta.etag)
            ]
            ops += [
                Delete(outbox_key(user, s)) for s in range(max(0, tail - self._retain), max(0, new_tail - self._retain))
            ]
            try:
                await self._client.transact(self._store, ops)
                return
            except Conflict:
                # A writer of this user committed meanwhile: read again.
                await asyncio.sleep(random.uniform(0, min(0.1, 0.004 * 2**attempt)))
        log.warning("outbox.advance_contended", user_id=user)  # the next round republishes; consumers dedupe

    async def _leave(self, caught_up: list[str], shards: Mapping[str, StateItem], metas: Mapping[str, StateItem]) -> None:
        """Take the users caught up for `leave_after_seconds` out of their dirty shards: per shard, one
        transaction that also rewrites each leaving user's meta as read, under its ETag, so a
        write of that user since the read makes it conflict and the user stays."""
        now = time.monotonic()
        leaving: dict[str, list[str]] = {}
        for user in caught_up:
            if user in self._sent:
                continue  # its advance is on its way
            if now - self._clean_since.setdefault(user, now) >= self._leave_after:
                leaving.setdefault(dirty_key(user), []).append(user)
        for key, gone in leaving.items():
            shard = shards[key]
            ops: list[Upsert | Delete] = [
                Upsert(meta_key(u), metas[meta_key(u)].value, etag=metas[meta_key(u)].etag) for u in gone
            ]
            ops.append(Upsert(key, {"users": [u for u in shard.value["users"] if u not in gone]}, etag=shard.etag))
            try:
                await self._client.transact(self._store, ops)
            except Conflict:
                continue  # one of them wrote, or another user joined the shard: next round
            for user in gone:
                self._clean_since.pop(user, None)

    # ---- the loop ---------------------------------------------------------------------------

    def idle_wait(self, idle_polls: int) -> float:
        """Seconds before the next poll after `idle_polls` polls in a row found nothing pending."""
        return min(self._idle_max, self._poll * 2.0 ** min(idle_polls, 32))

    async def run(self) -> None:
        """Relay until cancelled: at once after every nudge; otherwise poll, every poll interval
        while something is pending, ever less often while nothing is (see the module doc), and
        with back-off on failures."""
        failures = 0
        idle_polls = 0
        while True:
            self._wake.clear()
            try:
                worked = False
                while True:
                    published, failed = await self._drain(self._batch, everyone=False)
                    worked = worked or bool(published or failed or self.left)
                    if failed or not published:
                        break
                failures = failures + 1 if failed else 0
                idle_polls = 0 if worked else idle_polls + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the sidecar is down, or worse: keep going, with backoff
                failures += 1
                idle_polls = 0
                log.warning("outbox.drain_failed", failures=failures, error=f"{type(exc).__name__}: {exc}")
            if failures:
                await asyncio.sleep(min(self._max_backoff, self._poll * 2 ** (failures - 1)))
                continue
            wait = self.idle_wait(idle_polls - 1) if idle_polls else self._poll
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that comes
            # as the wake-up does, and stop() then waits for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            if self._wake.is_set():
                idle_polls = 0  # a commit: back to the short interval

    async def start(self) -> None:
        """Run the relay in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="doable-dapr-outbox")

    async def stop(self) -> None:
        for task in (self._task, self._advancing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._advancing = None


class DaprOutboxReader:
    """The runtime's view of the Dapr outbox (`Runtime.outbox`): pending events, depth and recent
    history. Relaying is `DaprOutbox`'s own loop, so marking records is not offered here."""

    def __init__(self, outbox: DaprOutbox) -> None:
        self._outbox = outbox

    async def pending(self, limit: int = 100) -> list[OutboxRecord]:
        records: list[OutboxRecord] = []
        for user in await self._outbox.dirty_users():
            for event in await self._outbox.pending(user):
                records.append(OutboxRecord(seq=len(records), event=event, created_at=_at(event), attempts=0))
                if len(records) >= limit:
                    return records
        return records

    async def depth(self) -> int:
        return await self._outbox.depth()

    async def history(self, user_id: str, task_id: int | None = None, limit: int = 50) -> list[TaskEvent]:
        return await self._outbox.history(user_id, task_id, limit)


def _users(shards: Mapping[str, StateItem]) -> list[str]:
    return sorted({u for item in shards.values() for u in item.value.get("users", [])})


def _at(event: TaskEvent) -> datetime:
    return event.timestamp
