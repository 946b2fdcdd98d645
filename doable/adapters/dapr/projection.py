"""The list projection of Dapr-state tasks (docs/read-paths.md): each task's filter and sort
fields as a compact entry, the domain's filter and sort applied to those entries, and the
process caches that keep parsed chunks, tasks and buckets between units of work.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from doable.adapters.dapr.state_doc import StateDoc
from doable.domain.query import SortField, SortValue, Status, TaskQuery, micros, no_due_sentinel
from doable.domain.task import Priority, Task

K = TypeVar("K")
V = TypeVar("V")

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


def sort_key(query: TaskQuery) -> Callable[[TaskKeys], tuple[SortValue, int]]:
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


def candidates(query: TaskQuery, entries: Iterable[TaskKeys]) -> Iterable[TaskKeys]:
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


class ParsedBuckets:
    """Tasks already parsed from a bucket, by (key, ETag): a list reads every bucket of the user,
    and most are unchanged since the last list. An ETag changes with every write, so an entry can
    never be stale; least recently used entries go first (bounded: `max_buckets` x 64 tasks)."""

    def __init__(self, max_buckets: int = 256) -> None:
        self._max = max_buckets
        self._entries: OrderedDict[tuple[str, str], list[Task]] = OrderedDict()

    def tasks(self, doc: StateDoc) -> list[Task]:
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
