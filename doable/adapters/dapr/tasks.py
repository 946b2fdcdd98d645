"""The task repository of a Dapr unit of work: tasks in 64-task buckets, and their list
projection written with them (doable/adapters/dapr/state.py explains the layout)."""

from __future__ import annotations

import asyncio
import builtins
import heapq
from typing import TYPE_CHECKING, Any

from doable.adapters.dapr.keys import (
    INDEX_FORMAT,
    bucket_key,
    bucket_of,
    chunk_of,
    dirty_key,
    index_key,
    meta_key,
    profile_key,
)
from doable.adapters.dapr.operations import Delete, Upsert
from doable.adapters.dapr.projection import TaskKeys, candidates, index_entry, sort_key
from doable.adapters.dapr.state_doc import StateDoc, meta_default
from doable.domain.errors import Conflict
from doable.domain.query import TaskPage, TaskQuery
from doable.domain.task import Task

if TYPE_CHECKING:
    from doable.adapters.dapr.state import DaprUnitOfWork

# Projection chunks per state transaction or bulk read when many are written or read at once
# (~65 KB each when full: a batch stays well under a sidecar's 4 MiB request limit).
BUILD_BATCH = 16


class DaprTasks:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def _bucket(self, uid: str, task_id: int) -> StateDoc:
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

    async def get_many(self, keys: builtins.list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        """`get` for many (user, task id) pairs with one bulk read for all of them (the users' meta
        and profile, the tasks' buckets and, in a write, projection chunks and dirty shards),
        where `get` one at a time costs a round trip or two per user: the reminders worker's
        lookups ask for up to hundreds of tasks of as many users."""
        wanted: dict[str, dict[str, Any]] = {}
        for uid, task_id in keys:
            if uid not in self._uow.prefetched:
                wanted |= {meta_key(uid): meta_default(), profile_key(uid): {}}
                if self._uow.writes:
                    wanted[dirty_key(uid)] = {"users": []}
            wanted[bucket_key(uid, bucket_of(task_id))] = {"tasks": {}}
            if self._uow.writes:
                wanted[index_key(uid, chunk_of(task_id))] = {"v": 0, "e": {}}
        await self._uow.load(wanted)
        self._uow.prefetched.update(uid for uid, _ in keys)
        found: dict[tuple[str, int], Task] = {}
        for key in dict.fromkeys(keys):
            task = await self.get(*key)
            if task is not None:
                found[key] = task
        return found

    async def _write(self, task: Task, bucket: StateDoc, *, remove: bool = False) -> None:
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
        matching = list(candidates(query, await self._entries(user_id, meta)))
        key = sort_key(query)
        if query.after is not None:
            ref = (query.after.value, query.after.task_id)
            after = [k for k in matching if (key(k) < ref if query.descending else key(k) > ref)]
        else:
            after = matching
        pick = heapq.nlargest if query.descending else heapq.nsmallest
        chosen = pick(query.limit, after, key=key)
        return TaskPage(tasks=await self._tasks(user_id, chosen), total=len(matching), next_cursor=None)

    async def _entries(self, uid: str, meta: StateDoc) -> builtins.list[TaskKeys]:
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

    def _parse_chunk(self, doc: StateDoc) -> builtins.list[TaskKeys]:
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
