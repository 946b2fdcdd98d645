"""What the Dapr client sends and returns: state items, the operations of a state transaction
and the entries of a bulk publish (doable/adapters/dapr/client.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StateItem:
    key: str
    value: Any
    etag: str | None


@dataclass(frozen=True)
class Upsert:
    key: str
    value: Any
    # None with first_write creates the key only if absent (Dapr: first-write without ETag).
    etag: str | None = None
    first_write: bool = True
    # The store forgets the key after this long (state.postgresql and state.redis support TTLs).
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str
    etag: str | None = None



@dataclass(frozen=True)
class BulkEntry:
    """One message of a bulk publish: the CloudEvent id, its type and the partition key."""

    event_id: str
    data: dict[str, Any]
    partition_key: str
    event_type: str
    # The entry's own trace (a bulk call has one request span; daprd applies `cloudevent.*`
    # metadata overrides per entry, `traceparent` among them).
    traceparent: str | None = None
