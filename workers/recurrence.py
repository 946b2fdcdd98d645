"""Recurring tasks: when an occurrence is completed, the next one is created.

The work itself (next due date by the series' anchor in the user's timezone: from the completed
occurrence's scheduled date, or from the completion day; past occurrences skipped and recorded
as missed; fields carried over; COUNT/UNTIL respected; one successor per series and due date;
nothing when the completion was undone) is the task service's `create_next_occurrence`, reached
through the `OccurrenceCreator` port: in-process here, by service invocation of the API in Dapr mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog
from pydantic import ValidationError

from doable.domain.events import EventType, TaskEvent
from doable.domain.task import Task
from doable.messaging import Message, Outcome, one_by_one
from doable.service import TaskService

log = structlog.get_logger("doable.recurrence")


class OccurrenceCreator(Protocol):
    async def create_next(self, completed: Task) -> Task | None:
        """Create (once) the occurrence after `completed`; None when the series has ended.

        Raises Conflict/Unavailable when it may be retried, InvalidArgument when it never will."""
        ...


class ServiceOccurrences:
    """In-process OccurrenceCreator: calls the task service directly."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def create_next(self, completed: Task) -> Task | None:
        return await self._service.create_next_occurrence(completed)


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

    async def on_task_event(self, message: Message) -> Outcome:
        try:
            event = TaskEvent.model_validate(message.data)
            if event.event_type is not EventType.COMPLETED:
                return Outcome.SUCCESS
            task = event.task()
        except ValidationError as exc:
            log.error("recurrence.bad_event", message_id=message.id, error=str(exc))
            return Outcome.DROP
        if task.recurrence is None:
            return Outcome.SUCCESS
        created = await self._creator.create_next(task)
        if created is None:
            log.info("recurrence.series_ended", task_id=task.task_id, series_id=task.series_id)
        else:
            log.info(
                "recurrence.next_occurrence",
                task_id=task.task_id,
                next_task_id=created.task_id,
                due_at=created.due_at.isoformat() if created.due_at else None,
            )
        return Outcome.SUCCESS

    async def on_task_events(self, messages: Sequence[Message]) -> list[Outcome]:
        """A batch, in order: only completions of repeating tasks do work (one occurrence each,
        through the creator), so the batch's cost is its dedupe records (see the registry)."""
        return await one_by_one(self.on_task_event, messages)
