"""The message broker behind the double's pub/sub components, persisted in PostgreSQL.

Each published message is one `messages` row; each subscribed app id gets its own
`deliveries` row per message, because every app id is its own consumer group
(docs: https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-overview/
"competing consumers" across replicas of one app id, fan-out across app ids).

Messages that carry `metadata.partitionKey` are ordered per key, as a partitioned
broker such as Kafka orders them: for one app, message n+1 of a key is not offered
until message n is settled (acknowledged, dropped or dead-lettered).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .store_pg import PgStore

PENDING = "pending"


@dataclass(frozen=True)
class BrokerMessage:
    seq: int
    pubsub: str
    topic: str
    partition_key: str | None
    raw: bool
    data: bytes
    metadata: Mapping[str, str]
    published_at: datetime

    @property
    def cloud_event(self) -> dict[str, Any] | None:
        """The CloudEvent envelope, or None for a raw (`rawPayload=true`) message."""
        return None if self.raw else json.loads(self.data)


@dataclass(frozen=True)
class PendingDelivery:
    id: int
    app_id: str
    attempts: int
    message: BrokerMessage


class Broker:
    def __init__(self, pg: PgStore) -> None:
        self._pg = pg

    async def append(
        self,
        *,
        pubsub: str,
        topic: str,
        data: bytes,
        metadata: Mapping[str, str],
        raw: bool,
        subscribers: Sequence[str],
        now: datetime,
        not_before: datetime,
    ) -> BrokerMessage:
        """Store a message and one delivery per subscribed app, atomically."""
        partition_key = metadata.get("partitionKey") or None
        async with self._pg.pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(
                f"INSERT INTO {self._pg.table('messages')} "
                "(pubsub, topic, partition_key, raw, data, metadata, published_at) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) RETURNING seq",
                pubsub,
                topic,
                partition_key,
                raw,
                data,
                json.dumps(dict(metadata)),
                now,
            )
            await conn.executemany(
                f"INSERT INTO {self._pg.table('deliveries')} "
                "(seq, app_id, pubsub, topic, partition_key, not_before) VALUES ($1, $2, $3, $4, $5, $6)",
                [(seq, app_id, pubsub, topic, partition_key, not_before) for app_id in subscribers],
            )
        return BrokerMessage(seq, pubsub, topic, partition_key, raw, data, dict(metadata), now)

    def _deliverable(self) -> str:
        # A pending delivery is blocked while an earlier delivery of the same
        # partition key to the same app is still pending (in flight or awaiting retry).
        d = self._pg.table("deliveries")
        return (
            f"d.status = '{PENDING}' AND NOT (d.id = ANY($1::bigint[])) AND NOT EXISTS ("
            f"SELECT 1 FROM {d} e WHERE e.status = '{PENDING}' AND e.app_id = d.app_id "
            "AND e.pubsub = d.pubsub AND e.topic = d.topic AND e.partition_key = d.partition_key AND e.seq < d.seq)"
        )

    async def due(self, now: datetime, exclude: Collection[int], limit: int = 200) -> list[PendingDelivery]:
        rows = await self._pg.pool.fetch(
            f"SELECT d.id, d.app_id, d.attempts, m.seq, m.pubsub, m.topic, m.partition_key, m.raw, m.data, "
            f"m.metadata::text AS metadata, m.published_at FROM {self._pg.table('deliveries')} d "
            f"JOIN {self._pg.table('messages')} m ON m.seq = d.seq "
            f"WHERE {self._deliverable()} AND d.not_before <= $2 ORDER BY d.seq LIMIT $3",
            list(exclude),
            now,
            limit,
        )
        return [
            PendingDelivery(
                r["id"],
                r["app_id"],
                r["attempts"],
                BrokerMessage(
                    r["seq"],
                    r["pubsub"],
                    r["topic"],
                    r["partition_key"],
                    r["raw"],
                    bytes(r["data"]),
                    json.loads(r["metadata"]),
                    r["published_at"],
                ),
            )
            for r in rows
        ]

    async def next_due_at(self, exclude: Collection[int]) -> datetime | None:
        """Earliest time a currently blocked-by-backoff delivery becomes due."""
        return await self._pg.pool.fetchval(
            f"SELECT min(d.not_before) FROM {self._pg.table('deliveries')} d WHERE {self._deliverable()}",
            list(exclude),
        )

    async def settle(self, delivery_id: int, status: str, attempts: int) -> None:
        """Mark a delivery as finished (acked, dropped, dead-lettered or failed)."""
        await self._pg.pool.execute(
            f"UPDATE {self._pg.table('deliveries')} SET status = $2, attempts = $3 WHERE id = $1",
            delivery_id,
            status,
            attempts,
        )

    async def reschedule(self, delivery_id: int, attempts: int, not_before: datetime) -> None:
        await self._pg.pool.execute(
            f"UPDATE {self._pg.table('deliveries')} SET attempts = $2, not_before = $3 WHERE id = $1",
            delivery_id,
            attempts,
            not_before,
        )

    async def pending_count(self) -> int:
        return int(
            await self._pg.pool.fetchval(
                f"SELECT count(*) FROM {self._pg.table('deliveries')} WHERE status = '{PENDING}'"
            )
        )

    async def statuses(self, app_id: str | None = None) -> dict[str, int]:
        """Delivery counts by status (for assertions and timeout messages)."""
        rows = await self._pg.pool.fetch(
            f"SELECT status, count(*) AS n FROM {self._pg.table('deliveries')} "
            "WHERE $1::text IS NULL OR app_id = $1 GROUP BY status",
            app_id,
        )
        return {r["status"]: int(r["n"]) for r in rows}
