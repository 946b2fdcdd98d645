"""Names shared by the code, the Dapr components and the Helm chart.

One place, so that a test can check that the chart's app-ids, the components'
scopes and the topics the code subscribes to never drift apart.
"""

from __future__ import annotations

from typing import Final

# Dapr app-ids: one per process role (`doable serve` and `doable worker NAME`).
API_APP_ID: Final = "doable-api"
WORKER_APP_IDS: Final[dict[str, str]] = {
    "reminders": "doable-reminders",
    "notifications": "doable-notifications",
    "recurrence": "doable-recurrence",
    "audit": "doable-audit",
}
ALL_APP_IDS: Final = (API_APP_ID, *WORKER_APP_IDS.values())

# Dapr component names.
PUBSUB: Final = "pubsub"
LIVE_PUBSUB: Final = "live-pubsub"
STATE_STORE: Final = "statestore"
SECRET_STORE: Final = "secretstore"
REMINDER_SWEEP_BINDING: Final = "reminder-sweep"

# Topics (the first three are the original specification's).
TASK_EVENTS: Final = "task-events"
TASK_UPDATES: Final = "task-updates"
REMINDERS: Final = "reminders"
NOTIFICATIONS: Final = "notifications"
DEAD_LETTER: Final = "dead-letter"
TOPICS: Final = (TASK_EVENTS, TASK_UPDATES, REMINDERS, NOTIFICATIONS, DEAD_LETTER)
# Topics only the API's live streams (SSE) consume. Each API replica holds its own users'
# connections, so every replica needs every message: these topics go through LIVE_PUBSUB, whose
# consumer group is the pod, not the app-id (one group per app-id would hand each message to one
# replica only). Nothing durable depends on them, so they have no dead-letter topic.
LIVE_TOPICS: Final = (TASK_UPDATES, NOTIFICATIONS)
DURABLE_TOPICS: Final = tuple(t for t in TOPICS if t not in LIVE_TOPICS)


def pubsub_for(topic: str) -> str:
    """The Dapr pub/sub component a topic is published and subscribed through."""
    return LIVE_PUBSUB if topic in LIVE_TOPICS else PUBSUB

# Which app-id consumes which topic.
SUBSCRIPTIONS: Final[dict[str, tuple[str, ...]]] = {
    API_APP_ID: (TASK_UPDATES, NOTIFICATIONS),
    "doable-reminders": (TASK_EVENTS,),
    "doable-notifications": (REMINDERS,),
    "doable-recurrence": (TASK_EVENTS,),
    # The audit worker also keeps the record of dead letters (Dapr mode: the dead-letter topic).
    "doable-audit": (TASK_EVENTS, DEAD_LETTER),
}

# Which app-ids publish (the outbox relay lives in the API; workers publish
# reminders and notifications).
PUBLISHERS: Final[dict[str, tuple[str, ...]]] = {
    API_APP_ID: (TASK_EVENTS, TASK_UPDATES),
    "doable-reminders": (REMINDERS,),
    "doable-notifications": (NOTIFICATIONS,),
}

# The port every process serves HTTP on (API, MCP, Dapr callbacks, /metrics).
APP_PORT: Final = 8000
