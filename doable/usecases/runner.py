"""What every use case runs on: a unit of work (retried when a concurrent writer won), an undo
record of each change, idempotency keys, dry runs that keep nothing, and the events a change
records. One public collaborator, so the use cases in other modules (undo, bulk, series) need no
access to anything private, and none of them imports another.

A change answers with an `Outcome`: its value, the token that undoes it and the user's calendar,
all read in the change's own unit of work, so a transport presents the result in the user's
timezone without a second transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from pydantic import BaseModel

from doable.domain.clock import Clock, LocalCalendar
from doable.domain.errors import Conflict, InvalidArgument, NotFound
from doable.domain.events import EventType, TaskEvent
from doable.domain.profile import Profile
from doable.domain.task import Task
from doable.platform.actor import current_actor
from doable.ports import StoredResult, UnitOfWork, UnitOfWorkFactory
from doable.usecases.undo_log import UndoLog
from doable.usecases.undo_log import save as save_undo

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M", bound=BaseModel)

_USER_ID = re.compile(r"^[A-Za-z0-9._:@|+-]{1,128}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Writers of one user that keep colliding retry for this long, however many rounds that takes:
# a budget in rounds runs out early when every transaction is slow (a loaded store or sidecar),
# and the user then sees a conflict although nothing went wrong.
CONFLICT_RETRY_SECONDS = 5.0

# A change's work: it writes through the unit of work and notes each step in the undo log.
Change = Callable[[UnitOfWork, UndoLog], Awaitable[T]]
Read = Callable[[UnitOfWork], Awaitable[T]]


@dataclass(frozen=True)
class Outcome(Generic[T_co]):
    """A use case's answer to a transport: the value, the user's calendar (timezone and now) read
    in the same unit of work, and the token that undoes the change (None: a read, a preview, or
    a change that changed nothing)."""

    value: T_co
    calendar: LocalCalendar
    undo: str | None = None


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How an idempotent change stores its result, to answer a repeat with the first one."""

    dump: Callable[[T], object]
    load: Callable[[object], T]


def model_codec(model: type[M]) -> Codec[M]:
    return Codec(dump=lambda value: value.model_dump(mode="json"), load=model.model_validate)


TASK_CODEC = model_codec(Task)


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise InvalidArgument("user_id", "must be 1-128 characters of letters, digits and . _ : @ | + -")
    return user_id


def check_idempotency_key(key: str) -> str:
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.match(key):
        raise InvalidArgument("idempotency_key", "must be 1-128 printable characters without spaces")
    return key


async def profile_of(uow: UnitOfWork, user_id: str) -> Profile:
    """The user's profile (the default one until they set a timezone)."""
    return await uow.profiles.get(user_id) or Profile(user_id=user_id)


async def task_of(uow: UnitOfWork, user_id: str, task_id: int) -> Task:
    """The user's task `task_id`, or NotFound (also for an id that cannot be one)."""
    if not isinstance(task_id, int) or isinstance(task_id, bool) or not 1 <= task_id <= 2**53:
        raise NotFound(f"task {task_id} not found")
    task = await uow.tasks.get(user_id, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


class UseCaseRunner:
    """Runs use cases over units of work. Knows nothing of HTTP, MCP, SQL or Dapr."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, trace_id: Callable[[], str | None]) -> None:
        self._uow = uow
        self._clock = clock
        self._trace_id = trace_id

    def now(self) -> datetime:
        return self._clock.now()

    def calendar(self, profile: Profile) -> LocalCalendar:
        return LocalCalendar(now=self._clock.now(), tz=profile.tz)

    def event(self, kind: EventType, task: Task, cause: str | None = None) -> TaskEvent:
        """The event of a change to `task`, by whoever is acting now, in the current trace."""
        return TaskEvent.of(
            kind, task, at=self._clock.now(), trace_id=self._trace_id(), actor=current_actor(), cause=cause
        )

    async def atomic(self, work: Read[T]) -> T:
        """Run `work` in a unit of work, retrying when a concurrent writer won."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFLICT_RETRY_SECONDS
        attempt = 0
        while True:
            try:
                async with self._uow() as uow:
                    result = await work(uow)
                    await uow.commit()
                    return result
            except Conflict:
                if loop.time() >= deadline:
                    raise
                # Jittered exponential backoff spreads writers that keep colliding on one user.
                await asyncio.sleep(random.uniform(0, min(0.25, 0.004 * 2**attempt)))
                attempt += 1

    async def read(self, work: Read[T], *, lookup: bool = False) -> T:
        """`work` in a read-only unit of work; `lookup`: it reads rows by key only."""
        async with self._uow(write=False, lookup=lookup) as uow:
            return await work(uow)

    async def read_for(self, user_id: str, work: Read[T], *, lookup: bool = False) -> Outcome[T]:
        """A read, with the user's calendar from the same unit of work."""

        async def both(uow: UnitOfWork) -> Outcome[T]:
            value = await work(uow)
            return Outcome(value, self.calendar(await profile_of(uow, user_id)))

        return await self.read(both, lookup=lookup)

    async def dry_run(self, user_id: str, work: Change[T]) -> Outcome[T]:
        """Run `work` and keep nothing: a preview sees exactly what the real call would do."""
        async with self._uow() as uow:
            value = await work(uow, UndoLog("preview"))
            return Outcome(value, self.calendar(await profile_of(uow, user_id)))

    async def change(
        self,
        user_id: str,
        key: str | None,
        request: Mapping[str, object],
        work: Change[T],
        codec: Codec[T],
    ) -> Outcome[T]:
        """Run `work` atomically, with an undo record of what it did; with an idempotency key, a
        repeat answers with the first result and token (and a different request under the same key
        is refused): `codec` stores the result for that."""
        label = str(request.get("op", "change"))

        async def undoable(uow: UnitOfWork) -> tuple[T, str | None]:
            log = UndoLog(label)
            value = await work(uow, log)
            return value, await save_undo(uow, user_id, log, self._clock.now())

        once = undoable if key is None else self._idempotent(user_id, key, request, undoable, codec)

        async def with_calendar(uow: UnitOfWork) -> Outcome[T]:
            value, token = await once(uow)
            return Outcome(value, self.calendar(await profile_of(uow, user_id)), token)

        return await self.atomic(with_calendar)

    def _idempotent(
        self,
        user_id: str,
        key: str,
        request: Mapping[str, object],
        work: Read[tuple[T, str | None]],
        codec: Codec[T],
    ) -> Read[tuple[T, str | None]]:
        key = check_idempotency_key(key)
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()

        async def once(uow: UnitOfWork) -> tuple[T, str | None]:
            stored = await uow.idempotency.get(user_id, key)
            now = self._clock.now()
            if stored is not None and now - stored.created_at > IDEMPOTENCY_WINDOW:
                await uow.idempotency.forget(user_id, key)
                stored = None
            if stored is not None:
                if stored.request_hash != digest:
                    raise InvalidArgument("idempotency_key", "was already used for a different request; use a new key")
                return codec.load(stored.result["task"]), stored.result.get("undo")
            value, token = await work(uow)
            result = {"task": codec.dump(value), "undo": token}
            await uow.idempotency.put(user_id, key, StoredResult(request_hash=digest, created_at=now, result=result))
            return value, token

        return once
