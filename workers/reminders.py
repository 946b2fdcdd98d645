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

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from pydantic import ValidationError

from doable.domain.clock import Clock
from doable.domain.errors import NotFound
from doable.domain.events import EventType, TaskEvent
from doable.domain.reminders import ReminderEvent, ScheduledReminder, still_wanted, wanted_reminders
from doable.domain.task import Task
from doable.platform import topology
from doable.platform.metrics import REMINDER_LATENESS, REMINDERS_FIRED
from doable.ports import EventPublisher, JobScheduler, ReminderLedger, TaskLookup
from doable.ports.messages import Job, Message, Outcome, Outgoing, outcome_for, publish_many
from doable.usecases.service import TaskService

log = structlog.get_logger("doable.reminders")


class ServiceTaskLookup:
    """In-process TaskLookup over the task service (Dapr mode asks the API by service invocation)."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def get(self, user_id: str, task_id: int) -> Task | None:
        try:
            return await self._service.get(user_id, task_id)
        except NotFound:
            return None

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        return await self._service.get_many(keys)


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

    async def on_task_events(self, messages: Sequence[Message]) -> list[Outcome]:
        """A batch of task events: the same convergence as `on_task_event`, for every task of the
        batch at once (the ledger read, its writes, the task reads and the jobs, each once per
        batch). A task's events converge to what its last one asks (the task as it is now)."""
        outcomes, last = _last_event_per_task(messages)
        if not last:
            return outcomes
        current = await self._ledger.for_tasks(list(last))
        # A task with nothing in the ledger whose event wants no reminder needs nothing: if the
        # task has reminders now, the event that gave them is still to come and schedules them.
        lookup = [
            k
            for k, (event, snapshot) in last.items()
            if event.event_type is not EventType.DELETED and (current.get(k) or snapshot.reminders)
        ]
        latest = await self._tasks.get_many(lookup) if lookup else {}
        looked_up = set(lookup)
        gone: list[tuple[str, TaskEvent]] = []
        puts: list[ScheduledReminder] = []
        wanted_now: list[ScheduledReminder] = []
        for key, (event, _) in last.items():
            if event.event_type is EventType.DELETED or key in looked_up:
                task = latest.get(key)
                wanted = {} if task is None or event.event_type is EventType.DELETED else wanted_reminders(task)
            else:
                continue
            have = current.get(key, {})
            gone += [(name, event) for name in have if name not in wanted]
            for name, want in wanted.items():
                reminder = ScheduledReminder(
                    job_name=name, user_id=event.user_id, task_id=event.task_id,
                    reminder_key=want.reminder_key, fire_at=want.fire_at,
                )  # fmt: skip
                existing = have.get(name)
                if existing is None or existing.fire_at != want.fire_at:
                    puts.append(reminder)
                    log.info("reminder.scheduled", job=name, task_id=event.task_id, fire_at=want.fire_at.isoformat())
                wanted_now.append(reminder)
        if gone:
            # Ledger first (see on_task_event).
            await self._ledger.remove([name for name, _ in gone])
            await self._jobs.cancel_many([name for name, _ in gone])
            for name, event in gone:
                log.info("reminder.cancelled", job=name, task_id=event.task_id, reason=event.event_type.value)
        if wanted_now:
            # Whether a firing finished is its own document (not one the puts write): both at once.
            _, finished = await asyncio.gather(self._ledger.put_many(puts), self._ledger.finished_many(wanted_now))
            jobs = [
                Job(name=r.job_name, due_at=r.fire_at, data=_job_data(r))
                for r in wanted_now
                if r.job_name not in finished
            ]
            await self._jobs.schedule_many(jobs)
        return outcomes

    async def on_jobs(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Reminder jobs that fell due together: `on_job` for all of them, each step once per batch.
        The tasks are read while the ledger is (a job's data names its task), not after the claim:
        a job then waits on one read fewer before it is sent."""
        keys = list(dict.fromkeys(k for job in jobs if (k := _task_of(job)) is not None))
        found, tasks = await asyncio.gather(
            self._ledger.get_many([j.name for j in jobs]), self._tasks.get_many(keys) if keys else _no_tasks()
        )
        outcomes = [Outcome.SUCCESS] * len(jobs)
        due: list[tuple[int, ScheduledReminder]] = []
        for i, job in enumerate(jobs):
            reminder = found.get(job.name)
            if reminder is None or reminder.fire_at != _fire_at(job):
                log.info("reminder.stale_job", job=job.name)
                continue
            due.append((i, reminder))
        if due:
            results = await self._fire_many([r for _, r in due], "job", {k: tasks.get(k) for k in keys})
            for (i, _), result in zip(due, results, strict=True):
                outcomes[i] = result
        return outcomes

    async def _fire_many(
        self,
        reminders: list[ScheduledReminder],
        source: str,
        read: dict[tuple[str, int], Task | None] | None = None,
    ) -> list[Outcome]:
        """`_fire` for many reminders: claim them together, read their tasks together (but those
        `read` just before, None for a task that was not found), publish the Reminder Events as
        one batch, and finish them together."""
        now = self._clock.now()
        lease_expired_before = now - self._options.claim_lease
        claimed: set[str] = await self._ledger.claim_many(reminders, now=now, lease_expired_before=lease_expired_before)
        mine = [r for r in reminders if r.job_name in claimed]
        for r in reminders:
            if r.job_name not in claimed:
                log.info("reminder.already_claimed", job=r.job_name, source=source)
        outcome = {r.job_name: Outcome.SUCCESS for r in reminders}
        if not mine:
            return [outcome[r.job_name] for r in reminders]
        try:
            known = read or {}
            unread = [k for k in dict.fromkeys((r.user_id, r.task_id) for r in mine) if k not in known]
            tasks: dict[tuple[str, int], Task | None] = {
                **known,
                **(await self._tasks.get_many(unread) if unread else {}),
            }
            skipped: list[ScheduledReminder] = []
            sending: list[tuple[ScheduledReminder, ReminderEvent]] = []
            for r in mine:
                task = tasks.get((r.user_id, r.task_id))
                if task is None or not still_wanted(task, r.job_name, r.fire_at):
                    skipped.append(r)
                else:
                    sending.append((r, ReminderEvent.of(task, r.job_name, r.fire_at)))
            if skipped:
                await self._ledger.finish_many(skipped, state="skipped", at=now)
                for r in skipped:
                    log.info("reminder.skipped", job=r.job_name, task_id=r.task_id, source=source)
            entries = [Outgoing(data=e.model_dump(mode="json"), key=e.user_id, event_id=e.event_id) for _, e in sending]
            failed = await publish_many(self._publisher, topology.REMINDERS, entries)
        except BaseException:
            # Hand the claims back so the job's retry (or the sweeper) can send them.
            await self._ledger.release_many(mine)
            raise
        sent = [r for r, e in sending if e.event_id not in failed]
        unsent = [r for r, e in sending if e.event_id in failed]
        if unsent:
            await self._ledger.release_many(unsent)
            for r in unsent:
                outcome[r.job_name] = Outcome.RETRY
        if sent:
            await self._ledger.finish_many(sent, state="sent", at=self._clock.now())
        for r in sent:
            lateness = max(0.0, (now - r.fire_at).total_seconds())
            REMINDERS_FIRED.labels(source=source).inc()
            REMINDER_LATENESS.observe(lateness)
            log.info("reminder.sent", job=r.job_name, task_id=r.task_id, source=source, lateness_s=round(lateness, 3))
        return [outcome[r.job_name] for r in reminders]

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
        if overdue:
            try:
                results = await self._fire_many(overdue, "sweep")
            except Exception as exc:
                # One at a time, so one reminder that cannot be sent does not hold up the others.
                log.warning("reminder.sweep_batch_failed", found=len(overdue), error=f"{type(exc).__name__}: {exc}")
                results = []
                for reminder in overdue:
                    try:
                        results.append(await self._fire(reminder, "sweep"))
                    except Exception as one:
                        results.append(outcome_for(one))
                        log.warning(
                            "reminder.sweep_failed", job=reminder.job_name, error=f"{type(one).__name__}: {one}"
                        )
            if any(result is not Outcome.SUCCESS for result in results):
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


def _last_event_per_task(
    messages: Sequence[Message],
) -> tuple[list[Outcome], dict[tuple[str, int], tuple[TaskEvent, Task]]]:
    """Each message's outcome (an unreadable one is dropped), and each task's last event with the
    task as that event saw it, in the order of those last events."""
    outcomes: list[Outcome] = []
    last: dict[tuple[str, int], tuple[TaskEvent, Task]] = {}
    for message in messages:
        try:
            event = TaskEvent.model_validate(message.data)
            snapshot = event.task()
        except ValidationError as exc:
            log.error("reminders.bad_event", message_id=message.id, error=str(exc))
            outcomes.append(Outcome.DROP)
            continue
        outcomes.append(Outcome.SUCCESS)
        key = (event.user_id, event.task_id)
        last.pop(key, None)
        last[key] = (event, snapshot)
    return outcomes, last


def _job_data(reminder: ScheduledReminder) -> dict[str, object]:
    return {
        "user_id": reminder.user_id,
        "task_id": reminder.task_id,
        "reminder_key": reminder.reminder_key,
        "fire_at": reminder.fire_at.isoformat(),
    }


def _task_of(job: Job) -> tuple[str, int] | None:
    """The task a reminder job's data names (`_job_data`)."""
    user_id, task_id = job.data.get("user_id"), job.data.get("task_id")
    return (user_id, task_id) if isinstance(user_id, str) and isinstance(task_id, int) else None


async def _no_tasks() -> dict[tuple[str, int], Task]:
    return {}


def _fire_at(job: Job) -> datetime | None:
    try:
        return datetime.fromisoformat(str(job.data["fire_at"]))
    except (KeyError, ValueError):
        return None
