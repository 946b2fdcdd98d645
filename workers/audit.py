"""Audit: a complete, append-only history of every task event, per user."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from pydantic import ValidationError

from doable.domain.audit import AuditEntry
from doable.domain.events import TaskEvent
from doable.ports import AuditStore
from doable.ports.messages import Message, Outcome

log = structlog.get_logger("doable.audit")


class Audit:
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def on_task_event(self, message: Message) -> Outcome:
        try:
            event = TaskEvent.model_validate(message.data)
        except ValidationError as exc:
            log.error("audit.bad_event", message_id=message.id, error=str(exc))
            return Outcome.DROP
        previous = await self._store.latest(event.user_id, event.task_id)
        entry = AuditEntry.of(event, previous.task_data if previous else None)
        if await self._store.append(entry):
            log.info("audit.recorded", task_id=event.task_id, event_type=event.event_type.value)
        return Outcome.SUCCESS

    async def on_task_events(self, messages: Sequence[Message]) -> list[Outcome]:
        """A batch: malformed events dropped, the rest recorded in one transaction when the store
        can (`record_events`), else one by one."""
        outcomes: list[Outcome] = []
        events: list[TaskEvent] = []
        for message in messages:
            try:
                events.append(TaskEvent.model_validate(message.data))
                outcomes.append(Outcome.SUCCESS)
            except ValidationError as exc:
                log.error("audit.bad_event", message_id=message.id, error=str(exc))
                outcomes.append(Outcome.DROP)
        recorded = await self._store.record_events(events)
        if recorded:
            log.info("audit.recorded", count=len(recorded))
        return outcomes
