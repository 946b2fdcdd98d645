"""Tasks, profiles and the outbox in a Dapr transactional state store.

The key layout is in doable/adapters/dapr/keys.py. This module holds the unit of work and its
factory; the repositories are in dapr_tasks.py (tasks and their list projection, whose entries
and process caches are in dapr_projection.py) and dapr_repositories.py (the other documents).

Why buckets: a write rewrites one 64-task bucket instead of one huge per-user document, and a
read of one task reads one small key.
Why the list projection (docs/read-paths.md): a list filters and sorts all of a user's tasks in
memory with the domain's reference semantics, but only needs each task's filter and sort fields.
Those live in `tasks-index` chunks (512 tasks each, ~3x smaller than the tasks), written in the same
transaction as the bucket. The meta document carries every chunk's version ("ix": {n: rev}), so a
process that has a chunk parsed at that version does not read it again: a list reads the meta, the
chunks changed since this process last saw them, and only the page's tasks (cached by (id, rev)).
Users stored before the projection existed ("ixv" absent from meta) are listed from their buckets
until their next write builds their projection.
Why meta on every write: it is the per-user serialization point. Every unit of work
commits in one state transaction with the ETags it read, so two writers of one user can
never both win (no lost update, no duplicate task id), and the outbox entries of a change
commit with the change itself.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.keys import dirty_key, meta_key, outbox_key, profile_key
from doable.adapters.dapr.operations import Delete, Upsert
from doable.adapters.dapr.projection import ListCache, ParsedBuckets
from doable.adapters.dapr.repositories import (
    DaprActionTokens,
    DaprEvents,
    DaprIdempotencyKeys,
    DaprOccurrenceLog,
    DaprProfiles,
    DaprSeriesLinks,
)
from doable.adapters.dapr.state_doc import StateDoc, meta_default
from doable.adapters.dapr.tasks import DaprTasks
from doable.domain.events import TaskEvent


class DaprUnitOfWork:
    def __init__(
        self,
        client: DaprClient,
        store: str,
        parsed: ParsedBuckets | None = None,
        relay: str | None = None,
        on_commit: Callable[[], None] | None = None,
        lists: ListCache | None = None,
        list_index: bool = True,
        write: bool = True,
    ) -> None:
        self._client = client
        self._store = store
        # What a first touch of a user reads in one bulk read (`prefetch`).
        self.writes = write
        self.prefetched: set[str] = set()
        self._relay = relay
        self._on_commit = on_commit
        self.parsed = parsed or ParsedBuckets(0)
        self.lists = lists or ListCache(0, 0)
        # False: lists read every bucket, as before the projection (the bench's before, same run).
        # Writes maintain the projection either way.
        self.list_index = list_index
        self._docs: dict[str, StateDoc] = {}
        # The rev this unit of work writes tasks at, per user (meta "rev" + 1, taken on first write).
        self._revs: dict[str, int] = {}
        self.new_events: list[tuple[str, TaskEvent]] = []
        self.tasks = DaprTasks(self)
        self.profiles = DaprProfiles(self)
        self.events = DaprEvents(self)
        self.series = DaprSeriesLinks(self)
        self.idempotency = DaprIdempotencyKeys(self)
        self.occurrences = DaprOccurrenceLog(self)
        self.tokens = DaprActionTokens(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._docs.clear()
        self.new_events.clear()
        self._revs.clear()
        self.prefetched.clear()

    def loaded(self, key: str) -> StateDoc | None:
        return self._docs.get(key)

    async def transact(self, ops: list[Upsert | Delete]) -> None:
        """A state transaction of its own, outside this unit of work's."""
        await self._client.transact(self._store, ops)

    async def doc(self, key: str, default: dict[str, Any]) -> StateDoc:
        if key not in self._docs:
            self._docs[key] = StateDoc(key, await self._client.get_state(self._store, key), default)
        return self._docs[key]

    async def docs(self, keys: list[str], default: dict[str, Any]) -> list[StateDoc]:
        missing = [k for k in keys if k not in self._docs]
        found = await self._client.get_bulk(self._store, missing)
        for key in missing:
            self._docs[key] = StateDoc(key, found.get(key), dict(default))
        return [self._docs[k] for k in keys]

    async def prefetch(self, uid: str, extra: dict[str, dict[str, Any]] | None = None) -> None:
        """On the first touch of `uid`, read in one bulk read the meta and the profile (a list or a
        write reads both), plus `extra` (key: default), e.g. the bucket of the task being read; a
        write also the relay's dirty shard, which its commit updates when the user's outbox was
        empty. Each document keeps the ETag it was read with, so the commit is guarded exactly as
        with one read per document; a document read here and not changed is not written."""
        if uid in self.prefetched:
            return
        self.prefetched.add(uid)
        wanted = {meta_key(uid): meta_default(), profile_key(uid): {}}
        if self.writes:
            wanted[dirty_key(uid)] = {"users": []}
        await self.load({**wanted, **(extra or {})})

    async def load(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Read the documents of `wanted` (key: default) not read yet, in one bulk read."""
        missing = [k for k in wanted if k not in self._docs]
        if missing:
            found = await self._client.get_bulk(self._store, missing)
            for key in missing:
                self._docs[key] = StateDoc(key, found.get(key), wanted[key])

    def forget(self, keys: list[str]) -> None:
        """Read these documents again on their next use (they were written outside this unit of work)."""
        for key in keys:
            self._docs.pop(key, None)

    def created(self, key: str) -> StateDoc:
        """A document this unit of work creates under a fresh random key (an undo or confirmation
        token), unread: it commits create-only (first-write, no ETag), so if the key did exist the
        commit fails with Conflict, as a read would have made `put` fail."""
        if key not in self._docs:
            self._docs[key] = StateDoc(key, None, {})
        return self._docs[key]

    async def meta(self, uid: str) -> StateDoc:
        await self.prefetch(uid)
        return await self.doc(meta_key(uid), meta_default())

    async def rev(self, uid: str) -> int:
        """The rev of this unit of work's task writes for `uid` (bumped in meta once per unit of work)."""
        if uid not in self._revs:
            meta = await self.meta(uid)
            self._revs[uid] = meta.value["rev"] = int(meta.value.get("rev", 0)) + 1
            meta.dirty = True
        return self._revs[uid]

    async def commit(self) -> None:
        ops: list[Upsert | Delete] = []
        by_user: dict[str, list[TaskEvent]] = {}
        for uid, event in self.new_events:
            by_user.setdefault(uid, []).append(event)
        for uid, events in by_user.items():
            meta = await self.meta(uid)
            if meta.value["outbox_head"] == meta.value["outbox_tail"]:
                # This user's first unpublished event: make the user findable by the relay.
                shard = await self.doc(dirty_key(uid), {"users": []})
                if uid not in shard.value["users"]:
                    shard.value["users"] = [*shard.value["users"], uid]
                    shard.dirty = True
            for event in events:
                seq = meta.value["outbox_head"]
                meta.value["outbox_head"] = seq + 1
                ops.append(Upsert(outbox_key(uid, seq), event.model_dump(mode="json"), first_write=True))
            if self._relay is not None:
                meta.value["relay"] = self._relay  # this process's relay publishes them (DaprOutbox)
            meta.dirty = True
        ops.extend(doc.upsert() for doc in self._docs.values() if doc.dirty)
        ops.extend(Delete(doc.key, doc.etag) for doc in self._docs.values() if doc.deleted and doc.exists)
        if ops:
            await self._client.transact(self._store, ops)
        self._docs.clear()
        self.new_events.clear()
        self._revs.clear()
        self.prefetched.clear()
        if by_user and self._on_commit is not None:
            self._on_commit()


class DaprUnitOfWorkFactory:
    def __init__(
        self,
        client: DaprClient,
        store: str,
        *,
        parsed_buckets: int = 256,
        list_chunks: int = 256,
        list_tasks: int = 8192,
        list_index: bool = True,
        relay: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        # Shared by this process's units of work (bench/README.md: Dapr-state search).
        self.parsed = ParsedBuckets(parsed_buckets)
        self.lists = ListCache(list_chunks, list_tasks)
        self.list_index = list_index
        # The relay that publishes this process's events, and its wake-up after a commit.
        self.relay = relay
        self.on_commit = on_commit

    def __call__(self, *, write: bool = True, lookup: bool = False) -> DaprUnitOfWork:
        return DaprUnitOfWork(
            self.client, self.store, self.parsed, self.relay, self.on_commit, self.lists, self.list_index, write
        )
