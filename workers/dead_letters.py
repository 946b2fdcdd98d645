"""Dead letters in Dapr mode: the consumer of the `dead-letter` topic (run by the audit worker).

A subscriber's sidecar forwards to `dead-letter` what its app gave up on: a DROP answer, retries
run out, no matching route, an expired or unreadable event. It forwards the original message
unchanged (daprd's `sendToDeadLetter` republishes the same bytes and metadata), so the CloudEvent
still carries its id, its original `topic` and `source` (the publishing app), but neither the
subscription that gave up nor why, nor how often it tried. Each one is recorded once by message
id in the state store, counted in `doable_events_dead_lettered_total` and logged as
`events.dead_lettered` (never with the payload).

This is the only place Dapr mode counts dead letters: the app answering DROP cannot see the
retries the sidecar gives up on, so counting here counts each dead letter exactly once.
In embedded mode the bus records and counts them itself, and nothing reaches this topic.
"""

from __future__ import annotations

from typing import Any

import structlog

from doable.domain.clock import Clock
from doable.domain.errors import Conflict, Unavailable
from doable.platform import topology
from doable.platform.metrics import EVENTS_DEAD_LETTERED
from doable.ports import DeadLetterSink
from doable.ports.messages import MALFORMED_ATTRIBUTE, Message, Outcome

log = structlog.get_logger("doable.dead_letters")

UNKNOWN = "unknown"
# Neither the subscription nor the reason travels with a message Dapr dead-letters.
SIDECAR_REASON = "dead-lettered by a subscriber's sidecar: its app answered DROP or the retries ran out"


class DeadLetters:
    def __init__(self, sink: DeadLetterSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock

    async def on_dead_letter(self, message: Message) -> Outcome:
        """Record, count and log one dead letter. SUCCESS whatever it holds: nothing may go back
        to the topic it came from. RETRY only while the state store cannot take the record."""
        malformed = message.attributes.get(MALFORMED_ATTRIBUTE)
        # The envelope's topic is the original one; only a message published straight to the
        # dead-letter topic has none other. The label takes known topics only (bounded series).
        topic = message.topic if message.topic and message.topic != topology.DEAD_LETTER else UNKNOWN
        label = topic if topic in topology.TOPICS else UNKNOWN
        subscription = UNKNOWN
        reason = f"malformed dead letter: {malformed}" if malformed else SIDECAR_REASON
        try:
            new = await self._sink.record(
                subscription=subscription,
                topic=topic[:64],
                message_id=message.id,
                key=_key(message.data),
                data=message.data,
                reason=reason,
                attempts=0,  # not known: the sidecar does not say
                at=self._clock.now(),
            )
        except (Unavailable, Conflict):
            raise  # RETRY: the dead letter must be recorded, and the store will be back
        except Exception:
            # Recording cannot succeed (a bug, a record the store refuses): count and log it anyway.
            log.exception("events.dead_letter_not_recorded", message_id=message.id)
            new = True
        if not new:
            log.info("events.dead_letter_duplicate", message_id=message.id, original_topic=topic)
            return Outcome.SUCCESS
        EVENTS_DEAD_LETTERED.labels(topic=label, subscription=subscription).inc()
        log.error(
            "events.dead_lettered",
            message_id=message.id,
            original_topic=topic,
            source=message.attributes.get("source", UNKNOWN),
            reason=reason,
        )
        return Outcome.SUCCESS


def _key(data: dict[str, Any]) -> str:
    """The partition key events are published with (the user id), when the payload has one."""
    user = data.get("user_id")
    return user[:128] if isinstance(user, str) else ""
