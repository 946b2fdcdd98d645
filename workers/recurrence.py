"""Recurring tasks: when an occurrence is completed, the next one is created.

The work itself (next due date by the series' anchor in the user's timezone: from the completed
occurrence's scheduled date, or from the completion day; past occurrences skipped and recorded
as missed; fields carried over; COUNT/UNTIL respected; one successor per series and due date;
nothing when the completion was undone) is the task service's `create_next_occurrence`, reached
through the `OccurrenceCreator` port: in-process here, by service invocation of the API in Dapr mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from pydantic import ValidationError

from doable.domain.errors import Unavailable
from doable.domain.events import EventType, TaskEvent
from doable.domain.task import Task
from doable.ports import OccurrenceCreator
from doable.ports.messages import Message, Outcome, one_by_one
from doable.usecases.service import TaskService

log = structlog.get_logger("doable.recurrence")


class ServiceOccurrences:
    """In-process OccurrenceCreator: calls the task service directly."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def create_next(self, completed: Task) -> Task | None:
        return await self._service.create_next_occurrence(completed)

    async def create_next_many(self, completed: Sequence[Task]) -> list[Task | None]:
        return await self._service.create_next_occurrences(completed)


class Recurrence:
    def __init__(self, creator: OccurrenceCreator) -> None:
        self._creator = creator

    @staticmethod
    def acts_on(message: Message) -> bool:
        """Only the completion of a repeating task does anything (a malformed event is dropped)."""
        data = message.data
        task = data.get("task_data")
        return (
            data.get("event_type") == EventType.COMPLETED.value
            and isinstance(task, dict)
            and bool(task.get("recurrence"))
        )

    @staticmethod
    def _completed_task(message: Message) -> Task | Outcome:
        """The repeating task a message completed, or how to settle a message with nothing to do
        (SUCCESS) or that can never be read (DROP)."""
        try:
            event = TaskEvent.model_validate(message.data)
            if event.event_type is not EventType.COMPLETED:
                return Outcome.SUCCESS
            task = event.task()
        except ValidationError as exc:
            log.error("recurrence.bad_event", message_id=message.id, error=str(exc))
            return Outcome.DROP
        return task if task.recurrence is not None else Outcome.SUCCESS

    async def on_task_event(self, message: Message) -> Outcome:
        task = self._completed_task(message)
        if isinstance(task, Outcome):
            return task
        _log_created(task, await self._creator.create_next(task))
        return Outcome.SUCCESS

    async def on_task_events(self, messages: Sequence[Message]) -> list[Outcome]:
        """A batch, in order: only completions of repeating tasks do work, and their next
        occurrences are created together (`create_next_many`; in-process in one unit of work). If
        that fails (one user at the task limit, a conflict that outlasted its retries), the batch
        is handled again message by message (creating an occurrence is idempotent, so what the
        failed batch kept is found, not repeated): each completion is settled on its own (a bad
        one dropped or retried, the rest created)."""
        parsed = [self._completed_task(m) for m in messages]
        completions = [(i, t) for i, t in enumerate(parsed) if isinstance(t, Task)]
        if len(completions) < 2:
            return await one_by_one(self.on_task_event, messages)
        try:
            created = await self._creator.create_next_many([t for _, t in completions])
        except Unavailable:
            raise  # the bus waits for the database; one by one would fail the same way
        except Exception as exc:
            log.warning("recurrence.batch_failed", batch=len(completions), error=f"{type(exc).__name__}: {exc}")
            return await one_by_one(self.on_task_event, messages)
        for (_, task), made in zip(completions, created, strict=True):
            _log_created(task, made)
        return [Outcome.SUCCESS if isinstance(p, Task) else p for p in parsed]


def _log_created(completed: Task, created: Task | None) -> None:
    if created is None:
        log.info("recurrence.series_ended", task_id=completed.task_id, series_id=completed.series_id)
    else:
        log.info(
            "recurrence.next_occurrence",
            task_id=completed.task_id,
            next_task_id=created.task_id,
            due_at=created.due_at.isoformat() if created.due_at else None,
        )
