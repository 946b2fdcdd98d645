"""Notifications: turns Reminder Events into an inbox entry, a live push and a webhook call.

- The inbox is the durable record: one notification per Reminder Event id, so a redelivered or
  re-sent reminder never shows twice.
- The live push goes out on `notifications`; the API process fans it out to the user's open
  streams (SSE). It is repeated on redelivery; streams drop ids they have already sent.
- A webhook delivery is recorded with the notification and sent by a job of this worker, so
  retries with backoff survive restarts and never hold up the `reminders` subscription. After
  `max_attempts` the delivery is marked failed with the last status or error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from pydantic import ValidationError

from doable.domain.clock import Clock
from doable.domain.errors import Unavailable
from doable.domain.notifications import NewNotification, Notification, Webhook
from doable.domain.reminders import ReminderEvent
from doable.platform import topology
from doable.platform.metrics import NOTIFICATIONS_DELIVERED, NOTIFICATIONS_FAILED
from doable.ports import EventPublisher, InboxStore, JobScheduler, WebhookStore
from doable.ports.messages import Job, Message, Outcome, Outgoing, publish_many
from workers.webhooks import WebhookSender

log = structlog.get_logger("doable.notifications")


@dataclass(frozen=True)
class WebhookPolicy:
    max_attempts: int = 6
    first_delay: timedelta = timedelta(seconds=10)
    factor: float = 3.0

    def delay(self, attempts: int) -> timedelta:
        """Wait after `attempts` failed attempts: 10 s, 30 s, 90 s, 4.5 min, 13.5 min by default."""
        return self.first_delay * self.factor ** (attempts - 1)


class Notifications:
    def __init__(
        self,
        inbox: InboxStore,
        webhooks: WebhookStore,
        publisher: EventPublisher,
        jobs: JobScheduler,
        sender: WebhookSender,
        clock: Clock,
        policy: WebhookPolicy | None = None,
    ) -> None:
        self._inbox = inbox
        self._webhooks = webhooks
        self._publisher = publisher
        self._jobs = jobs
        self._sender = sender
        self._clock = clock
        self._policy = policy or WebhookPolicy()

    async def on_reminder(self, message: Message) -> Outcome:
        try:
            event = ReminderEvent.model_validate(message.data)
        except ValidationError as exc:
            log.error("notification.bad_event", message_id=message.id, error=str(exc))
            return Outcome.DROP
        note, created = await self._inbox.add(self._entry(event))
        if created:
            NOTIFICATIONS_DELIVERED.labels(channel="inbox").inc()
            log.info("notification.stored", notification_id=note.id, task_id=note.task_id)
        await self._publisher.publish(
            topology.NOTIFICATIONS, note.to_data(), key=note.user_id, event_id=f"notification-{note.id}"
        )
        await self._queue_webhook(note)
        return Outcome.SUCCESS

    def _entry(self, event: ReminderEvent) -> NewNotification:
        """The inbox entry of one Reminder Event (its event id makes a redelivery a no-op)."""
        return NewNotification(
            user_id=event.user_id,
            source_id=event.event_id,
            kind="reminder",
            task_id=event.task_id,
            title=event.title,
            data=event.model_dump(mode="json"),
            created_at=self._clock.now(),
        )

    async def on_reminders(self, messages: Sequence[Message]) -> list[Outcome]:
        """A batch of Reminder Events: the inbox entries in one transaction, the live pushes as one
        batch, the users' webhooks read once."""
        outcomes: list[Outcome] = []
        news: list[NewNotification] = []
        for message in messages:
            try:
                event = ReminderEvent.model_validate(message.data)
            except ValidationError as exc:
                log.error("notification.bad_event", message_id=message.id, error=str(exc))
                outcomes.append(Outcome.DROP)
                continue
            outcomes.append(Outcome.SUCCESS)
            news.append(self._entry(event))
        if not news:
            return outcomes
        # The users' webhooks are read beside the inbox write (the users are known already).
        stored, hooks = await asyncio.gather(
            self._inbox.add_many(news), self._webhooks.webhooks_for(list(dict.fromkeys(n.user_id for n in news)))
        )
        for note, created in stored:
            if created:
                NOTIFICATIONS_DELIVERED.labels(channel="inbox").inc()
                log.info("notification.stored", notification_id=note.id, task_id=note.task_id)
        notes = list({note.id: note for note, _ in stored}.values())
        entries = [Outgoing(data=n.to_data(), key=n.user_id, event_id=f"notification-{n.id}") for n in notes]
        if await publish_many(self._publisher, topology.NOTIFICATIONS, entries):
            raise Unavailable("the live push could not be published")
        for note in notes:
            if note.user_id in hooks:
                await self._queue_webhook(note, hooks[note.user_id])
        return outcomes

    async def on_job(self, job: Job) -> Outcome:
        """One webhook attempt (Dapr: POST /job/{name} on this worker)."""
        delivery_id = job.data.get("delivery_id")
        if not isinstance(delivery_id, int):
            log.error("webhook.bad_job", job=job.name)
            return Outcome.DROP
        delivery = await self._webhooks.get_delivery(delivery_id)
        if delivery is None or delivery.state != "pending":
            return Outcome.SUCCESS
        now = self._clock.now()
        hook = await self._webhooks.get_webhook(delivery.user_id)
        if hook is None:
            await self._webhooks.record_attempt(
                delivery_id, state="failed", status=None, error="webhook removed", at=now
            )
            return Outcome.SUCCESS
        result = await self._sender.send(
            delivery.url, delivery.body, secret=hook.secret, delivery_id=delivery_id, timestamp=int(now.timestamp())
        )
        attempts = delivery.attempts + 1
        if result.ok:
            await self._webhooks.record_attempt(
                delivery_id, state="delivered", status=result.status, error=None, at=now
            )
            NOTIFICATIONS_DELIVERED.labels(channel="webhook").inc()
            log.info("webhook.delivered", delivery_id=delivery_id, attempts=attempts, status=result.status)
            return Outcome.SUCCESS
        if attempts >= self._policy.max_attempts:
            await self._webhooks.record_attempt(
                delivery_id, state="failed", status=result.status, error=result.error, at=now
            )
            NOTIFICATIONS_FAILED.labels(channel="webhook").inc()
            log.warning("webhook.gave_up", delivery_id=delivery_id, attempts=attempts, error=result.error)
            return Outcome.SUCCESS
        await self._webhooks.record_attempt(
            delivery_id, state="pending", status=result.status, error=result.error, at=now
        )
        retry_at = now + self._policy.delay(attempts)
        await self._jobs.schedule(_attempt_job(delivery_id, attempts + 1, retry_at))
        log.info("webhook.retry_scheduled", delivery_id=delivery_id, attempts=attempts, retry_at=retry_at.isoformat())
        return Outcome.SUCCESS

    async def _queue_webhook(self, note: Notification, known: Webhook | None = None) -> None:
        hook = known or await self._webhooks.get_webhook(note.user_id)
        if hook is None:
            return
        body = json.dumps({"type": "notification", "notification": note.to_data()}, separators=(",", ":"))
        delivery = await self._webhooks.add_delivery(note.user_id, note.id, hook.url, body, self._clock.now())
        if delivery.state == "pending" and delivery.attempts == 0:
            # Scheduling is an overwrite, so doing it again on a redelivered event is harmless.
            await self._jobs.schedule(_attempt_job(delivery.id, 1, self._clock.now()))


def _attempt_job(delivery_id: int, attempt: int, at: datetime) -> Job:
    # One job name per attempt: a retry is never an overwrite of the job that is firing.
    return Job(name=f"webhook-{delivery_id}-{attempt}", due_at=at, data={"delivery_id": delivery_id})
