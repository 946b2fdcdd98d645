"""Tasks, profiles and the outbox in a Dapr transactional state store.

Key layout (the store keeps keys per app-id unless keyPrefix says otherwise):

    user:{uid}:meta          {"next_id", "count", "outbox_head", "outbox_tail"}   every write touches it
    user:{uid}:profile       the Profile
    tasks:{uid}:{n}          bucket n: {"tasks": {"<id>": Task}, "r": {"<id>": rev}}, ids (n*64, (n+1)*64]
    tasks-index:{uid}:{n}    list projection chunk n: {"v": rev, "e": {"<id>": [keys]}}, ids (n*512, (n+1)*512]
    outbox:{uid}:{seq}       one TaskEvent, seq in [outbox_tail, outbox_head)
    outbox-dirty:{shard}     {"users": [...]} users with unpublished events (16 shards)
    occ:{uid}:{series}       {"records": [...]} a series' per-occurrence history (latest 500)
    token:{uid}:{token}      an undo record or a pending bulk confirmation (with a TTL)

({uid} is percent-encoded: Dapr reserves "||" in keys.)

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

import asyncio
import builtins
import heapq
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

from doable.dapr.client import DaprClient, Delete, StateItem, Upsert
from doable.domain.errors import Conflict
from doable.domain.events import TaskEvent
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.profile import Profile
from doable.domain.query import SortField, SortValue, Status, TaskPage, TaskQuery, micros, no_due_sentinel
from doable.domain.task import Priority, Task
from doable.ports import ActionToken, StoredResult

K = TypeVar("K")
V = TypeVar("V")

BUCKET = 64
# Tasks per list-projection chunk: a write rewrites one chunk (~512 x 130 bytes), a cold list reads
# N/512 of them (docs/read-paths.md).
INDEX_CHUNK = 512
# The projection's format; a meta without it predates the projection (listed from the buckets).
INDEX_FORMAT = 1
# Projection chunks per state transaction or bulk read when many are written or read at once
# (~65 KB each when full: a batch stays well under a sidecar's 4 MiB request limit).
BUILD_BATCH = 16
DIRTY_SHARDS = 16
# A series' occurrence history keeps its latest records (one document per series).
OCCURRENCES_KEPT = 500


def _uid(uid: str) -> str:
    # Dapr reserves "||" (its app-id prefix separator) and ":" separates our key parts.
    return quote(uid, safe="")


def meta_key(uid: str) -> str:
    return f"user:{_uid(uid)}:meta"


def profile_key(uid: str) -> str:
    return f"user:{_uid(uid)}:profile"


def bucket_key(uid: str, n: int) -> str:
    return f"tasks:{_uid(uid)}:{n}"


def index_key(uid: str, n: int) -> str:
    return f"tasks-index:{_uid(uid)}:{n}"


def outbox_key(uid: str, seq: int) -> str:
    return f"outbox:{_uid(uid)}:{seq}"


def series_key(uid: str, series_id: str, after: datetime) -> str:
    return f"series:{_uid(uid)}:{quote(series_id, safe='')}:{micros(after)}"


def idempotency_key(uid: str, key: str) -> str:
    return f"idem:{_uid(uid)}:{quote(key, safe='')}"


def occurrences_key(uid: str, series_id: str) -> str:
    return f"occ:{_uid(uid)}:{quote(series_id, safe='')}"


def token_key(uid: str, token: str) -> str:
    return f"token:{_uid(uid)}:{quote(token, safe='')}"


def dirty_shard_key(shard: int) -> str:
    return f"outbox-dirty:{shard}"


def dirty_key(uid: str) -> str:
    return dirty_shard_key(zlib.crc32(uid.encode()) % DIRTY_SHARDS)


def bucket_of(task_id: int) -> int:
    return (task_id - 1) // BUCKET


def chunk_of(task_id: int) -> int:
    return (task_id - 1) // INDEX_CHUNK


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PRIORITY_BY_RANK = {p.rank: p for p in Priority}


def index_entry(task: Task, rev: int) -> list[Any]:
    """A task's list-projection entry: what filters and sorts read, and the rev it was written at."""
    return [
        task.title,
        task.description,
        1 if task.completed else 0,
        task.priority.rank,
        list(task.tags),
        micros(task.due_at) if task.due_at is not None else None,
        task.due_date.isoformat() if task.due_date is not None else None,
        micros(task.created_at),
        micros(task.updated_at),
        task.series_id,
        rev,
    ]


class TaskKeys:
    """A task as its list-projection entry: the attributes `TaskFilter.matches` reads, with the same
    types as on `Task`, plus the precomputed sort values and search text."""

    __slots__ = (
        "completed",
        "created_us",
        "description",
        "due_at",
        "due_date",
        "due_us",
        "priority",
        "rev",
        "series_id",
        "tags",
        "task_id",
        "text",
        "title",
        "title_key",
        "updated_us",
    )  # fmt: skip

    def __init__(self, task_id: int, e: list[Any]) -> None:
        title, description, completed, rank, tags, due_us, due_date, created_us, updated_us, series_id, rev = e
        self.task_id = task_id
        self.title: str = title
        self.description: str = description
        self.completed = bool(completed)
        self.priority = _PRIORITY_BY_RANK[rank]
        self.tags: tuple[str, ...] = tuple(tags)
        self.due_us: int | None = due_us
        self.due_at = _EPOCH + timedelta(microseconds=due_us) if due_us is not None else None
        self.due_date = date.fromisoformat(due_date) if due_date is not None else None
        self.created_us: int = created_us
        self.updated_us: int = updated_us
        self.series_id: str | None = series_id
        self.title_key = title.casefold()
        # doable.domain.query.search_text (casefold maps character by character, so this is equal).
        self.text = f"{self.title_key}\n{description.casefold()}"
        self.rev: int = rev


def _sort_key(query: TaskQuery) -> Callable[[TaskKeys], tuple[SortValue, int]]:
    """(sort value, task id) of an entry: doable.domain.query.sort_value on the precomputed fields."""
    sort = query.sort
    if sort is SortField.DUE:
        missing = no_due_sentinel(query.descending)
        return lambda k: (missing if k.due_us is None else k.due_us, k.task_id)
    if sort is SortField.PRIORITY:
        return lambda k: (k.priority.rank, k.task_id)
    if sort is SortField.TITLE:
        return lambda k: (k.title_key, k.task_id)
    if sort is SortField.CREATED:
        return lambda k: (k.created_us, k.task_id)
    return lambda k: (k.updated_us, k.task_id)


def _candidates(query: TaskQuery, entries: Iterable[TaskKeys]) -> Iterable[TaskKeys]:
    """A cheap necessary condition first (status, priority, keyword), then the domain's own
    `TaskFilter.matches` on what is left: the result is exactly the domain's."""
    f = query.filter
    it = iter(entries)
    if f.keyword:
        kw = f.keyword
        it = (k for k in it if kw in k.text)
    if f.status is Status.PENDING or f.overdue is not None:
        it = (k for k in it if not k.completed)
    elif f.status is Status.COMPLETED:
        it = (k for k in it if k.completed)
    if f.priorities:
        ps = f.priorities
        it = (k for k in it if k.priority in ps)
    return (k for k in it if f.matches(k))  # type: ignore[arg-type]


class ListCache:
    """What a process has already parsed for lists: projection chunks by (key, version) and whole
    tasks by (user, id, rev). A version or rev changes with every write of that chunk or task and
    is never reused, so an entry can never be stale. Both least recently used first out."""

    def __init__(self, max_chunks: int = 256, max_tasks: int = 8192) -> None:
        self.chunks: _Lru[tuple[str, int], list[TaskKeys]] = _Lru(max_chunks)
        self.tasks: _Lru[tuple[str, int, int], Task] = _Lru(max_tasks)


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self._size <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class _Doc:
    """A state document read in this unit of work: its value, the ETag it was read with, and
    whether it changed (so commit writes only what changed, each guarded by its ETag)."""

    def __init__(self, key: str, item: StateItem | None, default: dict[str, Any]) -> None:
        self.key = key
        self.etag = item.etag if item else None
        self.exists = item is not None
        self.value: dict[str, Any] = dict(item.value) if item and isinstance(item.value, dict) else default
        self.dirty = False
        # Delete at commit (guarded by the ETag it was read with); a later write wins over it.
        self.deleted = False
        self.ttl_seconds: int | None = None

    def upsert(self) -> Upsert:
        # An absent key is created with first-write and no ETag: create-only, so two
        # concurrent creators cannot both succeed.
        return Upsert(self.key, self.value, etag=self.etag, first_write=True, ttl_seconds=self.ttl_seconds)

    def delete(self) -> None:
        self.deleted = True
        self.dirty = False


class ParsedBuckets:
    """Tasks already parsed from a bucket, by (key, ETag): a list reads every bucket of the user,
    and most are unchanged since the last list. An ETag changes with every write, so an entry can
    never be stale; least recently used entries go first (bounded: `max_buckets` x 64 tasks)."""

    def __init__(self, max_buckets: int = 256) -> None:
        self._max = max_buckets
        self._entries: OrderedDict[tuple[str, str], list[Task]] = OrderedDict()

    def tasks(self, doc: _Doc) -> list[Task]:
        if doc.etag is None or doc.dirty:
            return [Task.model_validate(raw) for raw in doc.value["tasks"].values()]
        entry = (doc.key, doc.etag)
        cached = self._entries.get(entry)
        if cached is None:
            cached = self._entries[entry] = [Task.model_validate(raw) for raw in doc.value["tasks"].values()]
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(entry)
        return cached


def _meta_default() -> dict[str, Any]:
    # A new user starts with an (empty) list projection; an existing meta without "ixv" predates it.
    return {"next_id": 0, "count": 0, "outbox_head": 0, "outbox_tail": 0, "ixv": INDEX_FORMAT, "rev": 0, "ix": {}}


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
        self._prefetched: set[str] = set()
        self._relay = relay
        self._on_commit = on_commit
        self.parsed = parsed or ParsedBuckets(0)
        self.lists = lists or ListCache(0, 0)
        # False: lists read every bucket, as before the projection (the bench's before, same run).
        # Writes maintain the projection either way.
        self.list_index = list_index
        self._docs: dict[str, _Doc] = {}
        # The rev this unit of work writes tasks at, per user (meta "rev" + 1, taken on first write).
        self._revs: dict[str, int] = {}
        self._new_events: list[tuple[str, TaskEvent]] = []
        self.tasks = _Tasks(self)
        self.profiles = _Profiles(self)
        self.events = _Events(self)
        self.series = _SeriesLinks(self)
        self.idempotency = _IdempotencyKeys(self)
        self.occurrences = _OccurrenceLog(self)
        self.tokens = _ActionTokens(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._docs.clear()
        self._new_events.clear()
        self._revs.clear()
        self._prefetched.clear()

    def loaded(self, key: str) -> _Doc | None:
        return self._docs.get(key)

    async def transact(self, ops: list[Upsert | Delete]) -> None:
        """A state transaction of its own, outside this unit of work's."""
        await self._client.transact(self._store, ops)

    async def doc(self, key: str, default: dict[str, Any]) -> _Doc:
        if key not in self._docs:
            self._docs[key] = _Doc(key, await self._client.get_state(self._store, key), default)
        return self._docs[key]

    async def docs(self, keys: list[str], default: dict[str, Any]) -> list[_Doc]:
        missing = [k for k in keys if k not in self._docs]
        found = await self._client.get_bulk(self._store, missing)
        for key in missing:
            self._docs[key] = _Doc(key, found.get(key), dict(default))
        return [self._docs[k] for k in keys]

    async def prefetch(self, uid: str, extra: dict[str, dict[str, Any]] | None = None) -> None:
        """On the first touch of `uid`, read in one bulk read the meta and the profile (a list or a
        write reads both), plus `extra` (key: default), e.g. the bucket of the task being read; a
        write also the relay's dirty shard, which its commit updates when the user's outbox was
        empty. Each document keeps the ETag it was read with, so the commit is guarded exactly as
        with one read per document; a document read here and not changed is not written."""
        if uid in self._prefetched:
            return
        self._prefetched.add(uid)
        wanted = {meta_key(uid): _meta_default(), profile_key(uid): {}}
        if self.writes:
            wanted[dirty_key(uid)] = {"users": []}
        await self.load({**wanted, **(extra or {})})

    async def load(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Read the documents of `wanted` (key: default) not read yet, in one bulk read."""
        missing = [k for k in wanted if k not in self._docs]
        if missing:
            found = await self._client.get_bulk(self._store, missing)
            for key in missing:
                self._docs[key] = _Doc(key, found.get(key), wanted[key])

    def forget(self, keys: list[str]) -> None:
        """Read these documents again on their next use (they were written outside this unit of work)."""
        for key in keys:
            self._docs.pop(key, None)

    def created(self, key: str) -> _Doc:
        """A document this unit of work creates under a fresh random key (an undo or confirmation
        token), unread: it commits create-only (first-write, no ETag), so if the key did exist the
        commit fails with Conflict, as a read would have made `put` fail."""
        if key not in self._docs:
            self._docs[key] = _Doc(key, None, {})
        return self._docs[key]

    async def meta(self, uid: str) -> _Doc:
        await self.prefetch(uid)
        return await self.doc(meta_key(uid), _meta_default())

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
        for uid, event in self._new_events:
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
        self._new_events.clear()
        self._revs.clear()
        self._prefetched.clear()
        if by_user and self._on_commit is not None:
            self._on_commit()


class _Tasks:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def _bucket(self, uid: str, task_id: int) -> _Doc:
        key = bucket_key(uid, bucket_of(task_id))
        together: dict[str, dict[str, Any]] = {key: {"tasks": {}}}
        if self._uow.writes:
            # A write of the task rewrites its projection chunk too: read both together.
            together[index_key(uid, chunk_of(task_id))] = {"v": 0, "e": {}}
        # With the user's meta and profile when this is the first touch of the user.
        await self._uow.prefetch(uid, together)
        await self._uow.load(together)
        return await self._uow.doc(key, {"tasks": {}})

    async def next_id(self, user_id: str) -> int:
        meta = await self._uow.meta(user_id)
        meta.value["next_id"] += 1
        meta.dirty = True
        return int(meta.value["next_id"])

    async def get(self, user_id: str, task_id: int) -> Task | None:
        meta = await self._uow.meta(user_id)
        if not 1 <= task_id <= meta.value["next_id"]:
            return None
        raw = (await self._bucket(user_id, task_id)).value["tasks"].get(str(task_id))
        return Task.model_validate(raw) if raw is not None else None

    async def _write(self, task: Task, bucket: _Doc, *, remove: bool = False) -> None:
        """Write (or remove) a task in its bucket and in its list-projection chunk, at this unit of
        work's rev; both commit with the meta that records the chunk's new version."""
        uid, tid = task.user_id, str(task.task_id)
        await self._ensure_index(uid)
        rev = await self._uow.rev(uid)
        revs = {k: v for k, v in bucket.value.get("r", {}).items() if k != tid}
        if remove:
            bucket.value["tasks"] = {k: v for k, v in bucket.value["tasks"].items() if k != tid}
        else:
            bucket.value["tasks"] = {**bucket.value["tasks"], tid: task.model_dump(mode="json")}
            revs[tid] = rev
        bucket.value["r"] = revs
        bucket.dirty = True
        n = chunk_of(task.task_id)
        chunk = await self._uow.doc(index_key(uid, n), {"v": 0, "e": {}})
        entries = {k: v for k, v in chunk.value["e"].items() if k != tid}
        if not remove:
            entries[tid] = index_entry(task, rev)
        chunk.value = {"v": rev, "e": entries}
        chunk.dirty = True
        meta = await self._uow.meta(uid)
        meta.value["ix"] = {**meta.value["ix"], str(n): rev}
        meta.dirty = True

    async def _ensure_index(self, uid: str) -> None:
        """Build the list projection of a user stored before it existed, from their buckets, in this
        unit of work (once: the meta then carries "ixv"). Rev 0: no task of theirs is cached by rev
        until it is written again (their buckets carry no revs)."""
        meta = await self._uow.meta(uid)
        if meta.value.get("ixv") == INDEX_FORMAT:
            return
        chunks: dict[int, dict[str, list[Any]]] = {}
        for task in await self.all(uid):
            chunks.setdefault(chunk_of(task.task_id), {})[str(task.task_id)] = index_entry(task, 0)
        rev = await self._uow.rev(uid)
        if len(chunks) <= BUILD_BATCH:
            for n, entries in chunks.items():
                doc = await self._uow.doc(index_key(uid, n), {"v": 0, "e": {}})
                doc.value = {"v": rev, "e": entries}
                doc.dirty = True
        else:
            # Too big for one state transaction (a sidecar bounds a request's body, 4 MiB by default):
            # the chunks are written first, in batches, and take effect only when this unit of work's
            # meta names them. If it fails (a concurrent write changed the meta), nothing names them
            # and the next write builds them again.
            ops: list[Upsert | Delete] = [
                Upsert(index_key(uid, n), {"v": rev, "e": e}, first_write=False) for n, e in chunks.items()
            ]
            for i in range(0, len(ops), BUILD_BATCH):
                await self._uow.transact(ops[i : i + BUILD_BATCH])
            # A chunk read before (prefetched with the task's bucket) now has a newer ETag.
            self._uow.forget([index_key(uid, n) for n in chunks])
        meta.value["ix"] = {str(n): rev for n in chunks}
        meta.value["ixv"] = INDEX_FORMAT
        meta.dirty = True

    async def add(self, task: Task) -> None:
        bucket = await self._bucket(task.user_id, task.task_id)
        if str(task.task_id) in bucket.value["tasks"]:
            raise Conflict(f"task {task.task_id} already exists")
        await self._write(task, bucket)
        meta = await self._uow.meta(task.user_id)
        meta.value["count"] = meta.value.get("count", 0) + 1
        meta.dirty = True

    async def update(self, task: Task) -> None:
        bucket = await self._bucket(task.user_id, task.task_id)
        current = bucket.value["tasks"].get(str(task.task_id))
        if current is None or current.get("version") != task.version - 1:
            raise Conflict(f"task {task.task_id} was changed concurrently")
        await self._write(task, bucket)

    async def remove(self, task: Task) -> None:
        bucket = await self._bucket(task.user_id, task.task_id)
        current = bucket.value["tasks"].get(str(task.task_id))
        if current is None or current.get("version") != task.version:
            raise Conflict(f"task {task.task_id} was changed concurrently")
        await self._write(task, bucket, remove=True)
        meta = await self._uow.meta(task.user_id)
        meta.value["count"] = max(0, meta.value.get("count", 0) - 1)
        meta.dirty = True

    async def all(self, user_id: str) -> list[Task]:
        """Every task of the user, from their buckets."""
        meta = await self._uow.meta(user_id)
        last = int(meta.value["next_id"])
        if last == 0:
            return []
        keys = [bucket_key(user_id, n) for n in range(bucket_of(last) + 1)]
        tasks: list[Task] = []
        for doc in await self._uow.docs(keys, {"tasks": {}}):
            tasks.extend(self._uow.parsed.tasks(doc))
        return tasks

    async def count(self, user_id: str) -> int:
        return int((await self._uow.meta(user_id)).value.get("count", 0))

    async def list(self, user_id: str, query: TaskQuery) -> TaskPage:
        meta = await self._uow.meta(user_id)
        if not self._uow.list_index or meta.value.get("ixv") != INDEX_FORMAT:
            page, total = query.apply(await self.all(user_id))
            return TaskPage(tasks=page, total=total, next_cursor=None)
        matching = list(_candidates(query, await self._entries(user_id, meta)))
        key = _sort_key(query)
        if query.after is not None:
            ref = (query.after.value, query.after.task_id)
            after = [k for k in matching if (key(k) < ref if query.descending else key(k) > ref)]
        else:
            after = matching
        pick = heapq.nlargest if query.descending else heapq.nsmallest
        chosen = pick(query.limit, after, key=key)
        return TaskPage(tasks=await self._tasks(user_id, chosen), total=len(matching), next_cursor=None)

    async def _entries(self, uid: str, meta: _Doc) -> builtins.list[TaskKeys]:
        """The user's projection entries: chunks read in this unit of work as they are now, the
        others from the process cache at the version the meta names, else read (in one bulk read)."""
        cache = self._uow.lists.chunks
        out: list[TaskKeys] = []
        missing: list[str] = []
        for n, version in meta.value["ix"].items():
            key = index_key(uid, int(n))
            doc = self._uow.loaded(key)
            if doc is not None:
                out.extend(self._parse_chunk(doc))
            elif (cached := cache.get((key, int(version)))) is not None:
                out.extend(cached)
            else:
                missing.append(key)
        batches = [missing[i : i + BUILD_BATCH] for i in range(0, len(missing), BUILD_BATCH)]
        for docs in await asyncio.gather(*(self._uow.docs(keys, {"v": 0, "e": {}}) for keys in batches)):
            for doc in docs:
                out.extend(self._parse_chunk(doc))
        return out

    def _parse_chunk(self, doc: _Doc) -> builtins.list[TaskKeys]:
        version = int(doc.value.get("v", 0))
        cacheable = doc.exists and not doc.dirty
        if cacheable and (cached := self._uow.lists.chunks.get((doc.key, version))) is not None:
            return cached
        parsed = [TaskKeys(int(tid), e) for tid, e in doc.value["e"].items()]
        if cacheable:
            self._uow.lists.chunks.put((doc.key, version), parsed)
        return parsed

    async def _tasks(self, uid: str, page: builtins.list[TaskKeys]) -> builtins.list[Task]:
        """The page's tasks, in page order: from this unit of work's buckets, else the process cache
        by (id, rev), else their buckets (one bulk read)."""
        cache = self._uow.lists.tasks
        found: dict[int, Task] = {}
        wanted: list[TaskKeys] = []
        for k in page:
            if self._uow.loaded(bucket_key(uid, bucket_of(k.task_id))) is None and k.rev:
                if (task := cache.get((uid, k.task_id, k.rev))) is not None:
                    found[k.task_id] = task
                    continue
            wanted.append(k)
        keys = sorted({bucket_key(uid, bucket_of(k.task_id)) for k in wanted})
        buckets = {doc.key: doc for doc in await self._uow.docs(keys, {"tasks": {}})}
        for k in wanted:
            doc = buckets[bucket_key(uid, bucket_of(k.task_id))]
            raw = doc.value["tasks"].get(str(k.task_id))
            if raw is None:  # removed since the projection was read (reads are not one snapshot)
                continue
            task = found[k.task_id] = Task.model_validate(raw)
            rev = doc.value.get("r", {}).get(str(k.task_id))
            if rev and doc.exists and not doc.dirty:
                cache.put((uid, k.task_id, int(rev)), task)
        return [found[k.task_id] for k in page if k.task_id in found]


class _Profiles:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str) -> Profile | None:
        await self._uow.prefetch(user_id)
        doc = await self._uow.doc(profile_key(user_id), {})
        return Profile.model_validate(doc.value) if doc.exists else None

    async def save(self, profile: Profile) -> None:
        await self._uow.prefetch(profile.user_id)
        doc = await self._uow.doc(profile_key(profile.user_id), {})
        doc.value = profile.model_dump(mode="json")
        doc.dirty = True


class _Events:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def add(self, event: TaskEvent) -> None:
        self._uow._new_events.append((event.user_id, event))


class _SeriesLinks:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def successor(self, user_id: str, series_id: str, after: datetime) -> int | None:
        doc = await self._uow.doc(series_key(user_id, series_id, after), {})
        return int(doc.value["task_id"]) if (doc.exists or doc.dirty) and not doc.deleted else None

    async def link(self, user_id: str, series_id: str, after: datetime, task_id: int, at: datetime) -> None:
        doc = await self._uow.doc(series_key(user_id, series_id, after), {})
        if (doc.exists or doc.dirty) and not doc.deleted:
            raise Conflict(f"series {series_id} already continued after this occurrence")
        doc.deleted = False
        # Created without an ETag (create-only): a concurrent creator makes the commit fail.
        doc.value = {"task_id": task_id, "at": at.isoformat()}
        doc.dirty = True

    async def unlink(self, user_id: str, series_id: str, after: datetime) -> None:
        doc = await self._uow.doc(series_key(user_id, series_id, after), {})
        if doc.exists or doc.dirty:
            doc.delete()


class _IdempotencyKeys:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str, key: str) -> StoredResult | None:
        # Usually a write's first touch of the user: its key comes in the same bulk read.
        await self._uow.prefetch(user_id, {idempotency_key(user_id, key): {}})
        doc = await self._uow.doc(idempotency_key(user_id, key), {})
        if not doc.exists:
            return None
        v = doc.value
        return StoredResult(
            request_hash=v["request_hash"], created_at=datetime.fromisoformat(v["created_at"]), result=v["result"]
        )

    async def put(self, user_id: str, key: str, stored: StoredResult) -> None:
        doc = await self._uow.doc(idempotency_key(user_id, key), {})
        if doc.exists:
            raise Conflict("the same idempotency key is in use by a concurrent call")
        doc.value = {
            "request_hash": stored.request_hash,
            "created_at": stored.created_at.isoformat(),
            "result": stored.result,
        }
        doc.dirty = True

    async def forget(self, user_id: str, key: str) -> None:
        doc = await self._uow.doc(idempotency_key(user_id, key), {})
        # Keep the ETag: a following put overwrites the expired entry only if nobody else did.
        doc.exists = False
        doc.value = {}


class _OccurrenceLog:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def _doc(self, user_id: str, series_id: str) -> _Doc:
        return await self._uow.doc(occurrences_key(user_id, series_id), {"records": []})

    async def add(self, records: list[OccurrenceRecord]) -> None:
        by_series: dict[tuple[str, str], list[OccurrenceRecord]] = {}
        for r in records:
            by_series.setdefault((r.user_id, r.series_id), []).append(r)
        for (uid, series_id), new in by_series.items():
            doc = await self._doc(uid, series_id)
            kept = [*doc.value["records"], *(r.model_dump(mode="json") for r in new)]
            kept.sort(key=lambda r: (r["due_at"], r["at"]))
            doc.value = {"records": kept[-OCCURRENCES_KEPT:]}
            doc.dirty = True

    async def list(self, user_id: str, series_id: str, limit: int = 50) -> list[OccurrenceRecord]:
        records = [OccurrenceRecord.model_validate(r) for r in (await self._doc(user_id, series_id)).value["records"]]
        records.sort(key=lambda r: (r.due_at, r.at), reverse=True)
        return records[:limit]

    async def remove(self, user_id: str, series_id: str, ids: builtins.list[str]) -> None:
        doc = await self._doc(user_id, series_id)
        kept = [r for r in doc.value["records"] if r["id"] not in set(ids)]
        if len(kept) != len(doc.value["records"]):
            doc.value = {"records": kept}
            doc.dirty = True


class _ActionTokens:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str, token: str) -> ActionToken | None:
        doc = await self._uow.doc(token_key(user_id, token), {})
        if not doc.exists or doc.deleted or "kind" not in doc.value:
            return None
        v = doc.value
        return ActionToken(
            user_id=user_id,
            token=token,
            kind=v["kind"],
            created_at=datetime.fromisoformat(v["created_at"]),
            expires_at=datetime.fromisoformat(v["expires_at"]),
            data=v["data"],
        )

    async def put(self, token: ActionToken) -> None:
        # A new token is random (doable.undo.new_token): not read, created create-only at commit.
        doc = self._uow.created(token_key(token.user_id, token.token))
        if doc.exists:
            raise Conflict("the token is already in use")
        doc.value = {
            "kind": token.kind,
            "created_at": token.created_at.isoformat(),
            "expires_at": token.expires_at.isoformat(),
            "data": token.data,
        }
        doc.dirty = True
        # The store forgets it a little after it expires (the service checks the expiry itself).
        doc.ttl_seconds = max(60, int((token.expires_at - token.created_at).total_seconds()) + 3600)

    async def remove(self, user_id: str, token: str) -> None:
        (await self._uow.doc(token_key(user_id, token), {})).delete()


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

    def __call__(self, *, write: bool = True) -> DaprUnitOfWork:
        return DaprUnitOfWork(
            self.client, self.store, self.parsed, self.relay, self.on_commit, self.lists, self.list_index, write
        )
