"""The audit log in the Dapr state store: append-only, one entry per task event.

    audit:{uid}:meta             {"next_id"}                       per-user serialization point
    audit:{uid}:b:{n}            {"entries": {"<id>": AuditEntry}}  ids (n*64, (n+1)*64]
    audit-task:{uid}:{task}      {"ids": [...]}                    one task's entries, oldest first
    audit-ev:{uid}:{event id}    {"id"}                            each event recorded once

Entry ids count per user, so "newest first, below `before`" is a range of ids and a page is a
bulk read of one or two buckets; one task's story reads its id list first.
A batch (`record_events`, the audit worker's bulk) is two bulk reads and one transaction.
"""

from __future__ import annotations

from typing import Any

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.documents import StateTxn, optimistic, part
from doable.domain.audit import AuditEntry
from doable.domain.events import TaskEvent

BUCKET = 64


def meta_key(uid: str) -> str:
    return f"audit:{part(uid)}:meta"


def bucket_key(uid: str, n: int) -> str:
    return f"audit:{part(uid)}:b:{n}"


def task_key(uid: str, task_id: int) -> str:
    return f"audit-task:{part(uid)}:{task_id}"


def event_key(uid: str, event_id: str) -> str:
    return f"audit-ev:{part(uid)}:{part(event_id)}"


def _bucket(entry_id: int) -> int:
    return (entry_id - 1) // BUCKET


class DaprAuditLog:
    def __init__(self, client: DaprClient, store: str) -> None:
        self._client = client
        self._store = store

    async def append(self, entry: AuditEntry) -> bool:
        async def work(txn: StateTxn) -> bool:
            seen = await txn.get(event_key(entry.user_id, entry.event_id))
            if seen.exists:
                return False
            meta = await txn.get(meta_key(entry.user_id), {"next_id": 0})
            entry_id = int(meta.value["next_id"]) + 1
            meta.value["next_id"] = entry_id
            meta.touch()
            bucket = await txn.get(bucket_key(entry.user_id, _bucket(entry_id)), {"entries": {}})
            bucket.value["entries"][str(entry_id)] = entry.model_copy(update={"id": entry_id}).model_dump(mode="json")
            bucket.touch()
            story = await txn.get(task_key(entry.user_id, entry.task_id), {"ids": []})
            story.value["ids"] = [*story.value["ids"], entry_id]
            story.touch()
            seen.set({"id": entry_id})
            return True

        return await optimistic(self._client, self._store, work)

    async def record_events(self, events: list[TaskEvent]) -> list[str]:
        """Audit `events` (in order) in one state transaction, as `append` after `latest` does one
        by one: each entry chained from its task's previous one, numbered on from the user's meta,
        and recorded once per event id (create-only `audit-ev` keys, so a redelivered event adds
        nothing). Two bulk reads (meta, stories and event keys; then the buckets of the tasks'
        latest entries and of the new ones); on Conflict, all again on fresh reads. The event ids
        newly recorded."""
        if not events:
            return []

        async def work(txn: StateTxn) -> list[str]:
            users = list(dict.fromkeys(e.user_id for e in events))
            tasks = list(dict.fromkeys((e.user_id, e.task_id) for e in events))
            meta_keys = [meta_key(u) for u in users]
            story_keys = [task_key(u, t) for u, t in tasks]
            docs = await txn.get_many([*meta_keys, *story_keys, *(event_key(e.user_id, e.event_id) for e in events)])
            metas = dict(zip(users, docs[: len(users)], strict=True))
            stories = dict(zip(tasks, docs[len(users) : len(users) + len(tasks)], strict=True))
            # One bulk read for all three kinds: the absent ones start from their kind's default.
            for doc in metas.values():
                doc.value = doc.value if doc.exists else {"next_id": 0}
            for doc in stories.values():
                doc.value = doc.value if doc.exists else {"ids": []}
            # The buckets of each task's latest entry (what a new entry is chained from) and of the
            # ids the new entries will take.
            keys: list[str] = []
            for (u, _), story in stories.items():
                if story.value["ids"]:
                    keys.append(bucket_key(u, _bucket(int(story.value["ids"][-1]))))
            for u in users:
                top = int(metas[u].value["next_id"])
                new = sum(1 for e in events if e.user_id == u)
                keys += [bucket_key(u, n) for n in range(_bucket(top + 1), _bucket(top + new) + 1)]
            await txn.get_many(keys, {"entries": {}})
            previous: dict[tuple[str, int], dict[str, Any] | None] = {}
            for (u, t), story in stories.items():
                if story.value["ids"]:
                    last = str(story.value["ids"][-1])
                    entry = (await txn.get(bucket_key(u, _bucket(int(last))))).value["entries"].get(last)
                    previous[(u, t)] = entry["task_data"] if entry is not None else None
            recorded: list[str] = []
            for event in events:
                uid, task = event.user_id, (event.user_id, event.task_id)
                seen = await txn.get(event_key(uid, event.event_id))
                if seen.exists or seen.dirty:
                    previous[task] = event.task_data
                    continue
                meta = metas[uid]
                entry_id = int(meta.value["next_id"]) + 1
                meta.value["next_id"] = entry_id
                meta.touch()
                entry = AuditEntry.of(event, previous.get(task)).model_copy(update={"id": entry_id})
                bucket = await txn.get(bucket_key(uid, _bucket(entry_id)), {"entries": {}})
                bucket.value["entries"][str(entry_id)] = entry.model_dump(mode="json")
                bucket.touch()
                story = stories[task]
                story.value["ids"] = [*story.value["ids"], entry_id]
                story.touch()
                seen.set({"id": entry_id})
                previous[task] = event.task_data
                recorded.append(event.event_id)
            return recorded

        return await optimistic(self._client, self._store, work)

    async def _entries(self, uid: str, ids: list[int]) -> list[AuditEntry]:
        keys = sorted({bucket_key(uid, _bucket(i)) for i in ids})
        found = await self._client.get_bulk(self._store, keys)
        entries: dict[str, Any] = {}
        for item in found.values():
            entries.update(item.value.get("entries", {}))
        return [AuditEntry.model_validate(entries[str(i)]) for i in ids if str(i) in entries]

    async def latest(self, user_id: str, task_id: int) -> AuditEntry | None:
        story = await self._client.get_state(self._store, task_key(user_id, task_id))
        if story is None or not story.value.get("ids"):
            return None
        found = await self._entries(user_id, [int(story.value["ids"][-1])])
        return found[0] if found else None

    async def history(
        self, user_id: str, *, task_id: int | None, limit: int, before_id: int | None
    ) -> list[AuditEntry]:
        if task_id is not None:
            story = await self._client.get_state(self._store, task_key(user_id, task_id))
            ids = [int(i) for i in (story.value.get("ids", []) if story is not None else [])]
            if before_id is not None:
                ids = [i for i in ids if i < before_id]
            chosen = list(reversed(ids))[:limit]
        else:
            meta = await self._client.get_state(self._store, meta_key(user_id))
            top = int(meta.value["next_id"]) if meta is not None else 0
            if before_id is not None:
                top = min(top, before_id - 1)
            chosen = list(range(top, max(0, top - limit), -1))
        return await self._entries(user_id, chosen)
