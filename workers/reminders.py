"""Reminders: one exact-time job per pending reminder, a Reminder Event when it fires, and a
sweeper for whatever the jobs missed.

- `on_task_event` (task-events) keeps exactly one job per reminder of a pending task, as the task
  is when the event is handled (events may come out of order): a changed
  time overwrites it, a completed or deleted task or a removed reminder deletes it. The ledger
  records what should fire, so the sweeper can find reminders whose job was lost.
- `on_job` fires one reminder; `sweep` (cron, every minute) fires the ones past their time by
  more than a grace period that were neither sent nor claimed.
- Firing claims (job name, fire time) first, so a job and the sweeper racing send once; checks
  the task as it is now (gone, completed, or the reminder moved: nothing is sent); publishes the
  Reminder Event with an id derived from the claim, so even a resend after a crash is recognised
  downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import structlog
from pydantic import ValidationError

from doable import topology
from doable.domain.clock import Clock
from doable.domain.errors import NotFound
from doable.domain.events import EventType, TaskEvent
from doable.domain.reminders import ReminderEvent, ScheduledReminder, still_wanted, wanted_reminders
from doable.domain.task import Task
from doable.messaging import EventPublisher, Job, JobScheduler, Message, Outcome, outcome_for
from doable.metrics import REMINDER_LATENESS, REMINDERS_FIRED
from doable.service import TaskService

log = structlog.get_logger("doable.reminders")


class TaskLookup(Protocol):
    async def get(self, user_id: str, task_id: int) -> Task | None:
        """The task as it is now, or None if it does not exist."""
        ...


class ServiceTaskLookup:
    """In-process TaskLookup over the task service (Dapr mode asks the API by service invocation)."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def get(self, user_id: str, task_id: int) -> Task | None:
        try:
            return await self._service.get(user_id, task_id)
        except NotFound:
            return None


class ReminderLedger(Protocol):
    async def for_task(self, user_id: str, task_id: int) -> dict[str, ScheduledReminder]: ...

    async def get(self, job_name: str) -> ScheduledReminder | None: ...

    async def put(self, reminder: ScheduledReminder) -> None: ...

    async def remove(self, job_names: list[str]) -> None: ...

    async def overdue(
        self, *, fired_before: datetime, lease_expired_before: datetime, limit: int
    ) -> list[ScheduledReminder]:
        """Reminders due by `fired_before` that no firing finished or holds a live claim on."""
        ...

    async def claim(self, reminder: ScheduledReminder, *, now: datetime, lease_expired_before: datetime) -> bool: ...

    async def finish(self, reminder: ScheduledReminder, state: Literal["sent", "skipped"], at: datetime) -> None: ...

    async def release(self, reminder: ScheduledReminder) -> None: ...

    async def finished(self, reminder: ScheduledReminder) -> bool:
        """Whether this firing was already sent or skipped."""
        ...


@dataclass(frozen=True)
class ReminderOptions:
    # The sweeper leaves a reminder to its job for this long after its time.
    sweep_grace: timedelta = timedelta(seconds=30)
    # A claim whose holder never finished (it died) may be taken over after this long.
    claim_lease: timedelta = timedelta(minutes=2)
    sweep_batch: int = 200


class Reminders:
    def __init__(
        self,
        ledger: ReminderLedger,
        jobs: JobScheduler,
        tasks: TaskLookup,
        publisher: EventPublisher,
        clock: Clock,
        options: ReminderOptions | None = None,
    ) -> None:
        self._ledger = ledger
        self._jobs = jobs
        self._tasks = tasks
        self._publisher = publisher
        self._clock = clock
        self._options = options or ReminderOptions()

    async def on_task_event(self, message: Message) -> Outcome:
        try:
            event = TaskEvent.model_validate(message.data)
            task = event.task()
        except ValidationError as exc:
            log.error("reminders.bad_event", message_id=message.id, error=str(exc))
            return Outcome.DROP
        # Events can arrive late, twice or out of order (redelivery, a retry after a later event):
        # schedule what the task wants *now*, so whichever delivery comes last leaves it right.
        # Acting on the event's snapshot let a stale `created` overwrite a newer reminder time.
        latest = await self._tasks.get(event.user_id, event.task_id)
        if latest is not None:
            task = latest
        wanted = {} if latest is None or event.event_type is EventType.DELETED else wanted_reminders(latest)
        current = await self._ledger.for_task(event.user_id, event.task_id)
        gone = [name for name in current if name not in wanted]
        if gone:
            # Ledger first: once the row is gone neither the job (if it still fires) nor the
            # sweeper sends anything, even if deleting the job fails now.
            await self._ledger.remove(gone)
            for name in gone:
                await self._jobs.cancel(name)
                log.info("reminder.cancelled", job=name, task_id=event.task_id, reason=event.event_type.value)
        for name, want in wanted.items():
            existing = current.get(name)
            unchanged = existing is not None and existing.fire_at == want.fire_at
            reminder = ScheduledReminder(
                job_name=name,
                user_id=task.user_id,
                task_id=task.task_id,
                reminder_key=want.reminder_key,
                fire_at=want.fire_at,
            )
            if not unchanged:
                await self._ledger.put(reminder)
            if await self._ledger.finished(reminder):
                continue
            # Scheduled again even when unchanged (scheduling overwrites): a crash between the
            # ledger write and this call left the ledger row without its job, and the redelivered
            # event must repair that, or the reminder waits for the sweeper.
            await self._jobs.schedule(Job(name=name, due_at=want.fire_at, data=_job_data(reminder)))
            if not unchanged:
                log.info("reminder.scheduled", job=name, task_id=task.task_id, fire_at=want.fire_at.isoformat())
        return Outcome.SUCCESS

    async def on_job(self, job: Job) -> Outcome:
        """A reminder job fired (Dapr: POST /job/{name})."""
        reminder = await self._ledger.get(job.name)
        if reminder is None or reminder.fire_at != _fire_at(job):
            # Cancelled or moved since it was scheduled; the new time has its own job.
            log.info("reminder.stale_job", job=job.name)
            return Outcome.SUCCESS
        return await self._fire(reminder, "job")

    async def sweep(self) -> Outcome:
        """Send reminders whose time passed without their job sending them (lost job, downtime)."""
        now = self._clock.now()
        overdue = await self._ledger.overdue(
            fired_before=now - self._options.sweep_grace,
            lease_expired_before=now - self._options.claim_lease,
            limit=self._options.sweep_batch,
        )
        outcome = Outcome.SUCCESS
        for reminder in overdue:
            try:
                result = await self._fire(reminder, "sweep")
            except Exception as exc:
                result = outcome_for(exc)
                log.warning("reminder.sweep_failed", job=reminder.job_name, error=f"{type(exc).__name__}: {exc}")
            if result is not Outcome.SUCCESS:
                outcome = Outcome.RETRY
        if overdue:
            log.info("reminder.swept", found=len(overdue))
        return outcome

    async def _fire(self, reminder: ScheduledReminder, source: str) -> Outcome:
        now = self._clock.now()
        lease_expired_before = now - self._options.claim_lease
        if not await self._ledger.claim(reminder, now=now, lease_expired_before=lease_expired_before):
            log.info("reminder.already_claimed", job=reminder.job_name, source=source)
            return Outcome.SUCCESS
        try:
            task = await self._tasks.get(reminder.user_id, reminder.task_id)
            if task is None or not still_wanted(task, reminder.job_name, reminder.fire_at):
                await self._ledger.finish(reminder, "skipped", now)
                log.info("reminder.skipped", job=reminder.job_name, task_id=reminder.task_id, source=source)
                return Outcome.SUCCESS
            event = ReminderEvent.of(task, reminder.job_name, reminder.fire_at)
            await self._publisher.publish(
                topology.REMINDERS, event.model_dump(mode="json"), key=task.user_id, event_id=event.event_id
            )
        except BaseException:
            # Hand the claim back so the job's retry (or the sweeper) can send it.
            await self._ledger.release(reminder)
            raise
        await self._ledger.finish(reminder, "sent", self._clock.now())
        lateness = max(0.0, (now - reminder.fire_at).total_seconds())
        REMINDERS_FIRED.labels(source=source).inc()
        REMINDER_LATENESS.observe(lateness)
        log.info(
            "reminder.sent",
            job=reminder.job_name,
            task_id=reminder.task_id,
            source=source,
            lateness_s=round(lateness, 3),
        )
        return Outcome.SUCCESS


def _job_data(reminder: ScheduledReminder) -> dict[str, object]:
    return {
        "user_id": reminder.user_id,
        "task_id": reminder.task_id,
        "reminder_key": reminder.reminder_key,
        "fire_at": reminder.fire_at.isoformat(),
    }


def _fire_at(job: Job) -> datetime | None:
    try:
        return datetime.fromisoformat(str(job.data["fire_at"]))
    except (KeyError, ValueError):
        return None
