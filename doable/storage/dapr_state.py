"""Tasks, profiles and the outbox in a Dapr transactional state store.

Key layout (the store keeps keys per app-id unless keyPrefix says otherwise):

    user:{uid}:meta          {"next_id", "count", "outbox_head", "outbox_tail"}   every write touches it
    user:{uid}:profile       the Profile
    tasks:{uid}:{n}          bucket n: {"tasks": {"<id>": Task}}, ids (n*64, (n+1)*64]
    outbox:{uid}:{seq}       one TaskEvent, seq in [outbox_tail, outbox_head)
    outbox-dirty:{shard}     {"users": [...]} users with unpublished events (16 shards)
    occ:{uid}:{series}       {"records": [...]} a series' per-occurrence history (latest 500)
    token:{uid}:{token}      an undo record or a pending bulk confirmation (with a TTL)

({uid} is percent-encoded: Dapr reserves "||" in keys.)

Why buckets: a list must see all of a user's tasks (filters and sorts run in memory with
the domain's reference semantics), and one bulk read of ~N/64 keys is fast for 10,000 tasks,
while a write rewrites one 64-task bucket instead of one huge per-user document.
Why meta on every write: it is the per-user serialization point. Every unit of work
commits in one state transaction with the ETags it read, so two writers of one user can
never both win (no lost update, no duplicate task id), and the outbox entries of a change
commit with the change itself.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from doable.dapr.client import DaprClient, Delete, StateItem, Upsert
from doable.domain.errors import Conflict
from doable.domain.events import TaskEvent
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.profile import Profile
from doable.domain.query import TaskPage, TaskQuery, micros
from doable.domain.task import Task
from doable.ports import ActionToken, StoredResult

BUCKET = 64
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


class DaprUnitOfWork:
    def __init__(
        self,
        client: DaprClient,
        store: str,
        parsed: ParsedBuckets | None = None,
        relay: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._relay = relay
        self._on_commit = on_commit
        self.parsed = parsed or ParsedBuckets(0)
        self._docs: dict[str, _Doc] = {}
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

    async def meta(self, uid: str) -> _Doc:
        return await self.doc(meta_key(uid), {"next_id": 0, "count": 0, "outbox_head": 0, "outbox_tail": 0})

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
        if by_user and self._on_commit is not None:
            self._on_commit()


class _Tasks:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def _bucket(self, uid: str, task_id: int) -> _Doc:
        return await self._uow.doc(bucket_key(uid, bucket_of(task_id)), {"tasks": {}})

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

    async def add(self, task: Task) -> None:
        bucket = await self._bucket(task.user_id, task.task_id)
        if str(task.task_id) in bucket.value["tasks"]:
            raise Conflict(f"task {task.task_id} already exists")
        bucket.value["tasks"] = {**bucket.value["tasks"], str(task.task_id): task.model_dump(mode="json")}
        bucket.dirty = True
        meta = await self._uow.meta(task.user_id)
        meta.value["count"] = meta.value.get("count", 0) + 1
        meta.dirty = True

    async def update(self, task: Task) -> None:
        bucket = await self._bucket(task.user_id, task.task_id)
        current = bucket.value["tasks"].get(str(task.task_id))
        if current is None or current.get("version") != task.version - 1:
            raise Conflict(f"task {task.task_id} was changed concurrently")
        bucket.value["tasks"] = {**bucket.value["tasks"], str(task.task_id): task.model_dump(mode="json")}
        bucket.dirty = True

    async def remove(self, task: Task) -> None:
        bucket = await self._bucket(task.user_id, task.task_id)
        current = bucket.value["tasks"].get(str(task.task_id))
        if current is None or current.get("version") != task.version:
            raise Conflict(f"task {task.task_id} was changed concurrently")
        bucket.value["tasks"] = {k: v for k, v in bucket.value["tasks"].items() if k != str(task.task_id)}
        bucket.dirty = True
        meta = await self._uow.meta(task.user_id)
        meta.value["count"] = max(0, meta.value.get("count", 0) - 1)
        meta.dirty = True

    async def all(self, user_id: str) -> list[Task]:
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
        page, total = query.apply(await self.all(user_id))
        return TaskPage(tasks=page, total=total, next_cursor=None)


class _Profiles:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str) -> Profile | None:
        doc = await self._uow.doc(profile_key(user_id), {})
        return Profile.model_validate(doc.value) if doc.exists else None

    async def save(self, profile: Profile) -> None:
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

    async def remove(self, user_id: str, series_id: str, ids: list[str]) -> None:
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
        doc = await self._uow.doc(token_key(token.user_id, token.token), {})
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
        relay: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        # Shared by this process's units of work (bench/README.md: Dapr-state search).
        self.parsed = ParsedBuckets(parsed_buckets)
        # The relay that publishes this process's events, and its wake-up after a commit.
        self.relay = relay
        self.on_commit = on_commit

    def __call__(self, *, write: bool = True) -> DaprUnitOfWork:
        return DaprUnitOfWork(self.client, self.store, self.parsed, self.relay, self.on_commit)
