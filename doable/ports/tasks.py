"""Task storage ports: what the task service needs from storage, as Protocols.

Adapters live in `doable.adapters.sql` and `doable.adapters.dapr`. A unit of work is one atomic change: the
task rows, the per-user id counter and the outbox events commit together or not at all.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from doable.domain.events import TaskEvent
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.profile import Profile
from doable.domain.query import TaskPage, TaskQuery
from doable.domain.task import Task


class TaskRepository(Protocol):
    async def next_id(self, user_id: str) -> int:
        """Allocate the user's next task id; ids are sequential and never reused."""
        ...

    async def get(self, user_id: str, task_id: int) -> Task | None: ...

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        """The tasks of these (user, task id) pairs that exist (one read where the store allows)."""
        ...

    async def add(self, task: Task) -> None: ...

    async def update(self, task: Task) -> None:
        """Store `task` (version already bumped); Conflict if version-1 is no longer current."""
        ...

    async def remove(self, task: Task) -> None:
        """Delete `task`; Conflict if it changed since it was read."""
        ...

    async def count(self, user_id: str) -> int: ...

    async def list(self, user_id: str, query: TaskQuery) -> TaskPage:
        """One page (without next_cursor; the service computes it) and the filter's total."""
        ...


class ProfileRepository(Protocol):
    async def get(self, user_id: str) -> Profile | None: ...

    async def save(self, profile: Profile) -> None: ...


class EventOutbox(Protocol):
    async def add(self, event: TaskEvent) -> None:
        """Record `event` in the same transaction as the change it describes."""
        ...


class SeriesLinks(Protocol):
    """Which occurrence of a repeating series followed which: the key that makes creating the
    next occurrence idempotent (one successor per series and previous due instant)."""

    async def successor(self, user_id: str, series_id: str, after: datetime) -> int | None:
        """The task id created to follow the occurrence due at `after`, if any."""
        ...

    async def link(self, user_id: str, series_id: str, after: datetime, task_id: int, at: datetime) -> None:
        """Record the successor; Conflict if a concurrent writer recorded one first."""
        ...

    async def unlink(self, user_id: str, series_id: str, after: datetime) -> None:
        """Forget the successor of the occurrence due at `after` (an undone completion); no error if none."""
        ...


class OccurrenceLog(Protocol):
    """Per-occurrence history of a series (completed, skipped, missed, rescheduled)."""

    async def add(self, records: list[OccurrenceRecord]) -> None: ...

    async def list(self, user_id: str, series_id: str, limit: int = 50) -> list[OccurrenceRecord]:
        """The series' records, latest scheduled date first (ties: latest recorded first)."""
        ...

    # builtins.list: below `list` the class body's own method shadows the builtin.
    async def remove(self, user_id: str, series_id: str, ids: builtins.list[str]) -> None:
        """Drop these records (an undone change); ids not found are ignored."""
        ...


@dataclass(frozen=True)
class ActionToken:
    """A short-lived token of one user: an undo record, or a bulk change awaiting confirmation."""

    user_id: str
    token: str
    kind: str
    created_at: datetime
    expires_at: datetime
    data: dict[str, Any]


class ActionTokens(Protocol):
    async def get(self, user_id: str, token: str) -> ActionToken | None:
        """The token (even when expired: the caller decides), or None."""
        ...

    async def put(self, token: ActionToken) -> None:
        """Record a new token; Conflict if it exists. May drop the user's expired tokens."""
        ...

    async def remove(self, user_id: str, token: str) -> None: ...


@dataclass(frozen=True)
class StoredResult:
    request_hash: str
    created_at: datetime
    result: dict[str, Any]


class IdempotencyKeys(Protocol):
    """Results of mutating calls by (user, idempotency key), so a retried call returns the first result."""

    async def get(self, user_id: str, key: str) -> StoredResult | None: ...

    async def put(self, user_id: str, key: str, stored: StoredResult) -> None:
        """Record the result; Conflict if a concurrent call with the same key recorded one first."""
        ...

    async def forget(self, user_id: str, key: str) -> None: ...


class UnitOfWork(Protocol):
    # Read-only: the service only reads these, and each adapter's unit of work holds its own
    # concrete repositories (a mutable protocol attribute would demand a setter accepting any of them).
    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def profiles(self) -> ProfileRepository: ...

    @property
    def events(self) -> EventOutbox: ...

    @property
    def series(self) -> SeriesLinks: ...

    @property
    def idempotency(self) -> IdempotencyKeys: ...

    @property
    def occurrences(self) -> OccurrenceLog: ...

    @property
    def tokens(self) -> ActionTokens: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Roll back anything not committed."""
        ...

    async def commit(self) -> None:
        """Make every change of this unit visible at once; Conflict if a concurrent writer won."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, write: bool = True, lookup: bool = False) -> UnitOfWork:
        """A fresh unit of work; `write=False` promises only reads (lets SQLite skip the write lock),
        `lookup=True` reads by key only (short: SQLite runs it where it runs the writes)."""
        ...
