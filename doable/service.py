"""The task use cases. Every transport (MCP, REST, chat, workers) calls these.

The service owns the transaction boundary (one unit of work per use case), the
rules that need the user's timezone, and the events each change records.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from doable.actor import current_actor
from doable.domain import filter_text
from doable.domain import recurrence as rec
from doable.domain.clock import Clock, LocalCalendar, check_year, localize, start_of_day, zone
from doable.domain.errors import Conflict, InvalidArgument, LimitExceeded, NotFound
from doable.domain.events import EventType, TaskEvent
from doable.domain.occurrences import OccurrenceStatus
from doable.domain.profile import Profile
from doable.domain.query import (
    DEFAULT_DESCENDING,
    KEYWORD_MAX,
    Overdue,
    TaskFilter,
    TaskPage,
    TaskQuery,
    check_limit,
    day_bounds,
    decode_cursor,
    encode_cursor,
)
from doable.domain.series import occurrence_wall, plan_next, successor
from doable.domain.task import (
    REMINDERS_MAX,
    Recurrence,
    Reminder,
    Task,
    normalize_description,
    normalize_tags,
    normalize_title,
    parse_priority,
    validate_reminders,
)
from doable.inputs import ListRequest, NewTask, RecurrenceArg, ReminderIn, TaskChanges
from doable.offload import off_loop
from doable.ports import StoredResult, UnitOfWork, UnitOfWorkFactory
from doable.series_edits import (
    Scope,
    apply_scope,
    build_recurrence,
    occurrence_record,
    record_completion,
    spread_all,
)
from doable.undo import Receipt, UndoLog
from doable.undo import save as save_undo

T = TypeVar("T")

_USER_ID = re.compile(r"^[A-Za-z0-9._:@|+-]{1,128}$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Writers of one user that keep colliding retry for this long, however many rounds that takes:
# a budget in rounds runs out early when every transaction is slow (a loaded store or sidecar),
# and the user then sees a conflict although nothing went wrong.
CONFLICT_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Limits:
    tasks_per_user: int = 100_000
    reminders_per_task: int = REMINDERS_MAX


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise InvalidArgument("user_id", "must be 1-128 characters of letters, digits and . _ : @ | + -")
    return user_id


def check_idempotency_key(key: str) -> str:
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.match(key):
        raise InvalidArgument("idempotency_key", "must be 1-128 printable characters without spaces")
    return key


def parse_due(value: str, tz: ZoneInfo, field: str = "due") -> tuple[datetime, date | None]:
    """(due instant, local date if all-day). Naive times are in the user's timezone."""
    text = value.strip()
    if _DATE_ONLY.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(field, f"is not a real calendar date (got {value!r})") from None
        check_year(day, field)
        return start_of_day(day, tz), day
    return parse_instant(text, tz, field), None


def requested_wall(value: str | None) -> datetime | None:
    """The local wall-clock time a due value asks for (naive), before it becomes an instant: a
    time in a spring-forward gap happens shifted, but a series starting there keeps asking for
    it. 00:00 of the day for an all-day value; None for an exact instant (offset or Z)."""
    if value is None:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text) if not text.endswith(("z", "Z")) else None
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is not None:
        return None
    return parsed


def parse_instant(value: str, tz: ZoneInfo, field: str) -> datetime:
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            field,
            f"must be ISO 8601 like '2026-12-01', '2026-12-01T09:00' or '2026-12-01T09:00:00+01:00' (got {value!r})",
        ) from None
    check_year(parsed, field)
    if parsed.tzinfo is None:
        return localize(parsed, tz)
    return parsed.astimezone(UTC)


class TaskService:
    """Use cases over a unit of work. Knows nothing of HTTP, MCP, SQL or Dapr."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        limits: Limits | None = None,
        trace_id: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._limits = limits or Limits()
        self._trace_id = trace_id

    @property
    def task_quota(self) -> int:
        """Most tasks one user may have; every path that creates tasks checks it."""
        return self._limits.tasks_per_user

    # ---- plumbing -----------------------------------------------------------------------

    async def _atomic(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
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

    async def _once(
        self,
        user_id: str,
        key: str | None,
        request: Mapping[str, object],
        work: Callable[[UnitOfWork, UndoLog], Awaitable[T]],
        *,
        receipt: Receipt | None = None,
        dump: Callable[[T], object] = lambda task: task.model_dump(mode="json"),  # type: ignore[attr-defined]
        load: Callable[[object], T] = Task.model_validate,  # type: ignore[assignment]
    ) -> T:
        """Run `work` atomically, with an undo record of what it did (its token goes to `receipt`);
        with an idempotency key, a repeat returns the first result and token (and a different
        request under the same key is refused). `dump`/`load` store a result that is not a Task."""
        label = str(request.get("op", "change"))

        async def undoable(uow: UnitOfWork) -> tuple[T, str | None]:
            log = UndoLog(label)
            result = await work(uow, log)
            return result, await save_undo(uow, user_id, log, self._clock.now())

        if key is None:
            result, token = await self._atomic(undoable)
        else:
            result, token = await self._atomic(self._idempotent(user_id, key, request, undoable, dump, load))
        if receipt is not None:
            receipt.undo = token
        return result

    def _idempotent(
        self,
        user_id: str,
        key: str,
        request: Mapping[str, object],
        work: Callable[[UnitOfWork], Awaitable[tuple[T, str | None]]],
        dump: Callable[[T], object],
        load: Callable[[object], T],
    ) -> Callable[[UnitOfWork], Awaitable[tuple[T, str | None]]]:
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
                return load(stored.result["task"]), stored.result.get("undo")
            result, token = await work(uow)
            stored_result = {"task": dump(result), "undo": token}
            await uow.idempotency.put(
                user_id, key, StoredResult(request_hash=digest, created_at=now, result=stored_result)
            )
            return result, token

        return once

    async def _dry_run(self, work: Callable[[UnitOfWork, UndoLog], Awaitable[T]]) -> T:
        """Run `work` and keep nothing: a preview sees exactly what the real call would do."""
        async with self._uow() as uow:
            return await work(uow, UndoLog("preview"))

    async def _read(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        async with self._uow(write=False) as uow:
            return await work(uow)

    def _event(self, kind: EventType, task: Task, cause: str | None = None) -> TaskEvent:
        return TaskEvent.of(
            kind, task, at=self._clock.now(), trace_id=self._trace_id(), actor=current_actor(), cause=cause
        )

    @staticmethod
    async def _profile(uow: UnitOfWork, user_id: str) -> Profile:
        return await uow.profiles.get(user_id) or Profile(user_id=user_id)

    @staticmethod
    async def _task(uow: UnitOfWork, user_id: str, task_id: int) -> Task:
        if not isinstance(task_id, int) or isinstance(task_id, bool) or not 1 <= task_id <= 2**53:
            raise NotFound(f"task {task_id} not found")
        task = await uow.tasks.get(user_id, task_id)
        if task is None:
            raise NotFound(f"task {task_id} not found")
        return task

    def calendar(self, profile: Profile) -> LocalCalendar:
        return LocalCalendar(now=self._clock.now(), tz=profile.tz)

    # ---- profile ------------------------------------------------------------------------

    async def get_profile(self, user_id: str) -> Profile:
        check_user_id(user_id)
        return await self._read(lambda uow: self._profile(uow, user_id))

    async def set_timezone(self, user_id: str, timezone: str, *, receipt: Receipt | None = None) -> Profile:
        check_user_id(user_id)
        zone(timezone)
        profile = Profile(user_id=user_id, timezone=timezone, updated_at=self._clock.now())

        async def work(uow: UnitOfWork, undo: UndoLog) -> Profile:
            undo.profile(await uow.profiles.get(user_id), profile)
            await uow.profiles.save(profile)
            return profile

        request = {"op": "set_timezone", "timezone": timezone}
        return await self._once(user_id, None, request, work, receipt=receipt)

    # ---- tasks --------------------------------------------------------------------------

    async def add(
        self,
        user_id: str,
        new: NewTask,
        *,
        idempotency_key: str | None = None,
        preview: bool = False,
        receipt: Receipt | None = None,
    ) -> Task:
        """Create a task. With `preview`, validate and return it as it would be, saving nothing."""
        check_user_id(user_id)
        title = normalize_title(new.title)
        description = normalize_description(new.description)
        priority = parse_priority(new.priority)
        tags = normalize_tags(new.tags)

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            profile = await self._profile(uow, user_id)
            tz = profile.tz
            due_at, due_date = parse_due(new.due, tz) if new.due is not None else (None, None)
            reminders = self._reminders(new.reminders, tz, due_at)
            recurrence = await self._recurrence(
                new.recurrence, due_at, tz, all_day=due_date is not None, wall=requested_wall(new.due)
            )
            if await uow.tasks.count(user_id) >= self._limits.tasks_per_user:
                raise LimitExceeded("tasks", f"limit of {self._limits.tasks_per_user} tasks per user reached")
            now = self._clock.now()
            task_id = await uow.tasks.next_id(user_id)
            task = Task(
                user_id=user_id,
                task_id=task_id,
                title=title,
                description=description,
                priority=priority,
                tags=tags,
                due_at=due_at,
                due_date=due_date,
                reminders=reminders,
                recurrence=recurrence,
                series_id=f"{user_id}:{task_id}" if recurrence else None,
                created_at=now,
                updated_at=now,
            )
            await uow.tasks.add(task)
            await uow.events.add(self._event(EventType.CREATED, task))
            undo.task(None, task)
            return task

        if preview:
            return await self._dry_run(work)
        request = {"op": "add", **new.model_dump(mode="json")}
        return await self._once(user_id, idempotency_key, request, work, receipt=receipt)

    async def get(self, user_id: str, task_id: int) -> Task:
        check_user_id(user_id)
        return await self._read(lambda uow: self._task(uow, user_id, task_id))

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        """The tasks of several (user, task id) pairs as they are now, read in one unit of work
        (the workers' batches); pairs that do not exist are left out."""
        for user_id, _ in keys:
            check_user_id(user_id)

        async def work(uow: UnitOfWork) -> dict[tuple[str, int], Task]:
            found: dict[tuple[str, int], Task] = {}
            for key in dict.fromkeys(keys):
                task = await uow.tasks.get(*key)
                if task is not None:
                    found[key] = task
            return found

        return await self._read(work)

    async def update(
        self,
        user_id: str,
        task_id: int,
        changes: TaskChanges,
        *,
        idempotency_key: str | None = None,
        scope: Scope = "future",
        preview: bool = False,
        receipt: Receipt | None = None,
    ) -> Task:
        """Change the fields named in `changes` (null clears). For a repeating task `scope` says
        which occurrences the change is for (see doable.series_edits). With `preview`, nothing is saved."""
        check_user_id(user_id)
        if not changes.model_fields_set:
            raise InvalidArgument("changes", "must name at least one field to update")
        if scope not in ("this", "future", "all"):
            raise InvalidArgument("scope", "must be one of this, future, all")

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            return await self.update_in(uow, await self._task(uow, user_id, task_id), changes, undo, scope=scope)

        if preview:
            return await self._dry_run(work)
        request = {
            "op": "update",
            "task_id": task_id,
            "scope": scope,
            **changes.model_dump(mode="json", exclude_unset=True),
        }
        return await self._once(user_id, idempotency_key, request, work, receipt=receipt)

    async def update_in(
        self,
        uow: UnitOfWork,
        task: Task,
        changes: TaskChanges,
        undo: UndoLog,
        *,
        scope: Scope = "future",
        cause: str | None = None,
    ) -> Task:
        """Apply `changes` to `task` within `uow` (also the bulk reschedule's step)."""
        given = changes.model_fields_set
        if "title" in given and changes.title is None:
            raise InvalidArgument("title", "cannot be cleared")
        if "priority" in given and changes.priority is None:
            changes = changes.model_copy(update={"priority": "none"})
        title = normalize_title(changes.title) if changes.title is not None else None
        description = normalize_description(changes.description) if "description" in given else None
        tags = normalize_tags(changes.tags) if "tags" in given else None
        priority = parse_priority(changes.priority) if "priority" in given else None
        user_id = task.user_id
        tz = (await self._profile(uow, user_id)).tz
        if scope == "this" and task.recurrence is not None and "recurrence" in given:
            raise InvalidArgument("scope", "'this' changes one occurrence; change the rule with scope future or all")
        update: dict[str, object] = {"updated_at": self._clock.now()}
        if title is not None:
            update["title"] = title
        if description is not None:
            update["description"] = description
        if tags is not None:
            update["tags"] = tags
        if priority is not None:
            update["priority"] = priority
        due_at, due_date = task.due_at, task.due_date
        if "due" in given:
            due_at, due_date = parse_due(changes.due, tz) if changes.due is not None else (None, None)
            update["due_at"], update["due_date"] = due_at, due_date
        reminders = task.reminders
        if "reminders" in given:
            reminders = self._reminders(changes.reminders, tz, due_at)
        else:
            # Keep existing reminders; an offset reminder needs the due date to stay.
            reminders = validate_reminders(reminders, due_at, self._limits.reminders_per_task)
        update["reminders"] = reminders
        recurrence = task.recurrence
        # The requested wall-clock time of the (new) due date: where a series starting here starts.
        wall = requested_wall(changes.due) if "due" in given else occurrence_wall(task, tz)
        if "recurrence" in given:
            recurrence = await self._recurrence(
                changes.recurrence, due_at, tz, all_day=due_date is not None, current=task.recurrence, wall=wall
            )
        elif recurrence is not None:
            if due_at is None:
                raise InvalidArgument("due", "cannot be cleared while the task repeats; clear recurrence too")
            if "due" in given and scope == "future":
                # The series re-anchors here: the rule restarts (and COUNT counts) from the new date.
                await off_loop(
                    rec.check_start, recurrence.rule, start=due_at, tz=tz, all_day=due_date is not None, wall=wall
                )
                start_wall = rec.series_start(due_at, tz, due_date is not None, wall)
                recurrence = recurrence.model_copy(update={"start": due_at, "prior": 0, "wall": start_wall})
        update["recurrence"] = recurrence
        if recurrence is not None and task.series_id is None:
            update["series_id"] = f"{user_id}:{task.task_id}"
        updated = apply_scope(task, task.evolve(**update), scope, set(given), tz)
        await uow.tasks.update(updated)
        await uow.events.add(self._event(EventType.UPDATED, updated, cause))
        undo.task(task, updated)
        if task.series_id and task.recurrence and not task.completed and task.due_at != updated.due_at:
            record = occurrence_record(task, OccurrenceStatus.RESCHEDULED, self._clock.now(), tz, moved_to=updated)
            await uow.occurrences.add([record])
            undo.records_added([record])
        if scope == "all" and task.series_id and task.recurrence:
            for other in await spread_all(uow, task.series_id, updated, set(given), self._clock.now(), undo):
                await uow.events.add(self._event(EventType.UPDATED, other, cause))
        return updated

    async def complete(
        self, user_id: str, task_id: int, *, idempotency_key: str | None = None, receipt: Receipt | None = None
    ) -> Task:
        return await self._set_completed(user_id, task_id, True, idempotency_key, receipt)

    async def reopen(
        self, user_id: str, task_id: int, *, idempotency_key: str | None = None, receipt: Receipt | None = None
    ) -> Task:
        return await self._set_completed(user_id, task_id, False, idempotency_key, receipt)

    async def _set_completed(
        self, user_id: str, task_id: int, done: bool, idempotency_key: str | None, receipt: Receipt | None
    ) -> Task:
        check_user_id(user_id)

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            return await self.set_completed_in(uow, await self._task(uow, user_id, task_id), done, undo)

        request = {"op": "complete" if done else "reopen", "task_id": task_id}
        return await self._once(user_id, idempotency_key, request, work, receipt=receipt)

    async def set_completed_in(
        self, uow: UnitOfWork, task: Task, done: bool, undo: UndoLog, cause: str | None = None
    ) -> Task:
        """Complete or reopen `task` within `uow` (a no-op when it already is), with its
        occurrence record when it repeats. Also the bulk action's step."""
        if task.completed == done:
            # Idempotent: completing a completed task records nothing new.
            return task
        now = self._clock.now()
        changed = task.evolve(completed=done, completed_at=now if done else None, updated_at=now)
        await uow.tasks.update(changed)
        await uow.events.add(self._event(EventType.COMPLETED if done else EventType.REOPENED, changed, cause))
        undo.task(task, changed)
        if task.series_id and task.recurrence and task.due_at:
            tz = (await self._profile(uow, task.user_id)).tz
            await record_completion(uow, task, done, now, tz, undo)
        return changed

    async def delete(
        self, user_id: str, task_id: int, *, idempotency_key: str | None = None, receipt: Receipt | None = None
    ) -> Task:
        check_user_id(user_id)

        async def work(uow: UnitOfWork, undo: UndoLog) -> Task:
            return await self.delete_in(uow, await self._task(uow, user_id, task_id), undo)

        request = {"op": "delete", "task_id": task_id}
        return await self._once(user_id, idempotency_key, request, work, receipt=receipt)

    async def delete_in(self, uow: UnitOfWork, task: Task, undo: UndoLog, cause: str | None = None) -> Task:
        """Delete `task` within `uow` (also the bulk action's step)."""
        await uow.tasks.remove(task)
        await uow.events.add(self._event(EventType.DELETED, task, cause))
        undo.task(task, None)
        return task

    async def create_next_occurrence(self, completed: Task) -> Task | None:
        """Create the occurrence that follows `completed` (the task as its `completed` event recorded it).

        Idempotent per series and completed due date: a redelivered or duplicated event, or the same
        occurrence completed again after a reopen, returns the occurrence made the first time (None
        if that was deleted since). None as well when the series has ended (COUNT/UNTIL)."""
        if completed.recurrence is None or completed.series_id is None or completed.due_at is None:
            return None
        check_user_id(completed.user_id)
        return await self._atomic(lambda uow: self._next_occurrence_in(uow, completed))

    async def create_next_occurrences(self, completed: Sequence[Task]) -> list[Task | None]:
        """`create_next_occurrence` for a batch of completions, in one unit of work (one
        transaction), in order: what each returns, by position. The same guarantees per item (one
        successor per series and date: a completion repeated within the batch, or redelivered
        later, finds the successor the first one made). All or nothing: when one item fails
        (e.g. a user's task limit), nothing is kept and the error is raised, so the caller can
        retry the items one by one and settle each on its own."""
        wanted = [
            i
            for i, t in enumerate(completed)
            if t.recurrence is not None and t.series_id is not None and t.due_at is not None
        ]
        for i in wanted:
            check_user_id(completed[i].user_id)
        if not wanted:
            return [None] * len(completed)

        async def work(uow: UnitOfWork) -> dict[int, Task | None]:
            return {i: await self._next_occurrence_in(uow, completed[i]) for i in wanted}

        made = await self._atomic(work)
        return [made.get(i) for i in range(len(completed))]

    async def _next_occurrence_in(self, uow: UnitOfWork, completed: Task) -> Task | None:
        """The work of `create_next_occurrence` within `uow` (which reads its own writes, so a
        batch's items see the successors made before them)."""
        user_id = completed.user_id
        series_id, after = completed.series_id, completed.series_base().due_at
        assert series_id is not None and after is not None
        existing = await uow.series.successor(user_id, series_id, after)
        if existing is not None and existing != completed.task_id:
            return await uow.tasks.get(user_id, existing)
        current = await uow.tasks.get(user_id, completed.task_id)
        if current is not None and not current.completed and current.version > completed.version:
            # Reopened (or its completion undone) after this completion, before it was handled.
            return None
        if existing is not None:
            # An undone completion claimed this occurrence (a link to itself); completed again since.
            await uow.series.unlink(user_id, series_id, after)
        tz = (await self._profile(uow, user_id)).tz
        now = self._clock.now()
        plan = await off_loop(plan_next, completed, tz, now)
        if plan is None:
            return None
        if plan.due_at is None:
            # The series has ended; the dates it passed while overdue are still missed (once,
            # however often this event is delivered).
            seen = {
                r.due_at
                for r in await uow.occurrences.list(user_id, series_id, limit=200)
                if r.status is OccurrenceStatus.MISSED
            }
            missed = [
                occurrence_record(completed, OccurrenceStatus.MISSED, now, tz, due_at=d)
                for d in plan.missed
                if d not in seen
            ]
            if missed:
                await uow.occurrences.add(missed)
            return None
        if await uow.tasks.count(user_id) >= self._limits.tasks_per_user:
            raise LimitExceeded("tasks", f"limit of {self._limits.tasks_per_user} tasks per user reached")
        task_id = await uow.tasks.next_id(user_id)
        task = successor(completed, task_id=task_id, due_at=plan.due_at, tz=tz, now=now, recurrence=plan.recurrence)
        await uow.series.link(user_id, series_id, after, task.task_id, now)
        await uow.tasks.add(task)
        await uow.events.add(self._event(EventType.CREATED, task))
        missed = [occurrence_record(completed, OccurrenceStatus.MISSED, now, tz, due_at=d) for d in plan.missed]
        await uow.occurrences.add(missed)
        return task

    async def list(self, user_id: str, request: ListRequest) -> tuple[TaskPage, LocalCalendar]:
        """A page of tasks, and the user's calendar the relative filters were resolved in."""
        check_user_id(user_id)

        async def work(uow: UnitOfWork) -> tuple[TaskPage, LocalCalendar]:
            cal = self.calendar(await self._profile(uow, user_id))
            query = self.build_query(request, cal)
            # One extra row tells whether another page exists without a second query.
            page = await uow.tasks.list(user_id, replace(query, limit=query.limit + 1))
            tasks = page.tasks[: query.limit]
            next_cursor = encode_cursor(query, tasks[-1]) if len(page.tasks) > query.limit else None
            echo = filter_text.describe(query.filter, query.sort.value, query.descending)
            return TaskPage(tasks=tasks, total=page.total, next_cursor=next_cursor, query=echo), cal

        return await self._read(work)

    def build_query(self, req: ListRequest, cal: LocalCalendar) -> TaskQuery:
        tz = cal.tz
        due_from = parse_instant(req.due_after, tz, "due_after") if req.due_after else None
        due_to = parse_instant(req.due_before, tz, "due_before") if req.due_before else None
        if req.due_after and _DATE_ONLY.match(req.due_after.strip()):
            due_from = parse_due(req.due_after, tz, "due_after")[0]
        if req.due_before and _DATE_ONLY.match(req.due_before.strip()):
            # "before 2026-12-01" means before that day starts.
            due_to = parse_due(req.due_before, tz, "due_before")[0]
        has_due: bool | None = None
        overdue: Overdue | None = None
        window = req.due
        if window == "overdue":
            overdue = Overdue(now=cal.now, today=cal.today)
        elif window == "today":
            due_from, due_to = _narrow(due_from, due_to, cal.day_bounds(cal.today))
        elif window == "tomorrow":
            due_from, due_to = _narrow(due_from, due_to, cal.day_bounds(cal.today + timedelta(days=1)))
        elif window == "this_week":
            due_from, due_to = _narrow(due_from, due_to, cal.week_bounds())
        elif window == "next_7_days":
            start, _ = cal.day_bounds(cal.today)
            due_from, due_to = _narrow(due_from, due_to, (start, cal.day_bounds(cal.today + timedelta(days=6))[1]))
        elif window == "none":
            has_due = False
        elif window == "any":
            has_due = True
        keyword = None
        if req.search is not None:
            keyword = req.search.strip().casefold()
            if "\x00" in keyword or len(keyword) > KEYWORD_MAX:
                raise InvalidArgument("search", f"must be at most {KEYWORD_MAX} characters of text")
            keyword = keyword or None
        tags = normalize_tags(req.tags) if req.tags else ()
        expr = filter_text.parse(req.filter, cal) if req.filter and req.filter.strip() else None
        flt = TaskFilter(
            expr=expr,
            status=req.status,
            priorities=frozenset(parse_priority(p) for p in req.priority or ()),
            tags_any=tags if req.tags_mode == "any" else (),
            tags_all=tags if req.tags_mode == "all" else (),
            due_from=due_from,
            due_to=due_to,
            **day_bounds(due_from, due_to, tz),
            has_due=has_due,
            overdue=overdue,
            keyword=keyword,
        )
        descending = DEFAULT_DESCENDING[req.sort] if req.order is None else req.order == "desc"
        query = TaskQuery(filter=flt, sort=req.sort, descending=descending, limit=check_limit(req.limit))
        if req.cursor:
            query = replace(query, after=decode_cursor(req.cursor, query))
        return query

    # ---- rules needing the user's timezone ---------------------------------------------

    # builtins.list: below `def list` the class body's own method shadows the builtin.
    def _reminders(self, given: builtins.list[ReminderIn] | None, tz: ZoneInfo, due_at: datetime | None) -> tuple[Reminder, ...]:
        if not given:
            return ()
        if len(given) > self._limits.reminders_per_task:
            raise InvalidArgument("reminders", f"at most {self._limits.reminders_per_task} reminders per task")
        parsed: list[Reminder] = []
        for i, r in enumerate(given):
            field = f"reminders[{i}]"
            if (r.at is None) == (r.minutes_before is None):
                raise InvalidArgument(field, "needs exactly one of 'at' (ISO datetime) or 'minutes_before'")
            if r.at is not None:
                parsed.append(Reminder(at=parse_instant(r.at, tz, f"{field}.at")))
            else:
                parsed.append(Reminder(minutes_before=r.minutes_before))
        return validate_reminders(tuple(parsed), due_at, self._limits.reminders_per_task)

    @staticmethod
    async def _recurrence(
        given: RecurrenceArg | None,
        due_at: datetime | None,
        tz: ZoneInfo | None = None,
        *,
        all_day: bool = False,
        current: Recurrence | None = None,
        wall: datetime | None = None,
    ) -> Recurrence | None:
        """The recurrence `given` (a string, or the typed object) starting at `due_at`; without an
        anchor of its own it keeps `current`'s (the task's recurrence before an update)."""
        if given is None:
            return None
        if due_at is None:
            raise InvalidArgument("recurrence", "needs a due date (the first occurrence)")
        # Validating a rule can be slow (the search for its occurrences): off the event loop.
        return await off_loop(build_recurrence, given, due_at, tz, all_day=all_day, current=current, wall=wall)


def _narrow(lo: datetime | None, hi: datetime | None, window: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    start = max(lo, window[0]) if lo else window[0]
    end = min(hi, window[1]) if hi else window[1]
    return start, end
