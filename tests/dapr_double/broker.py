"""The message broker behind the double's pub/sub components: a Kafka model persisted in PostgreSQL.

What is modelled, and where it comes from (dapr/components-contrib at v1.16.13, v1.17.8 and
v1.18.4, the releases daprd v1.16.19, v1.17.13 and v1.18.3 build with):

- **Partitions.** Every topic has N partitions (the chart's topics Job creates them all with
  `redpanda.topics.partitions`, default 3). `Publish` in `common/component/kafka/producer.go`
  turns the `partitionKey` (or `__key`) metadata into the Kafka message key; the producer's
  partitioner is sarama's hash partitioner (`sarama.NewHashPartitioner`: FNV-1a 32 of the key,
  `int32(hash) % N`, negated when negative; a message without a key goes to a random
  partition). v1.18 wraps it in `common/component/kafka/partitioner.go` so that a
  `partitionNumber` metadata picks the partition explicitly.
- **Consumer groups.** Offsets are per consumer group, so each message gets one delivery row
  per group. The group is the component's `consumerGroup` metadata, else its `consumerID`,
  which daprd defaults to the app id (`pkg/runtime/processor/pubsub/pubsub.go` Init;
  `common/component/kafka/metadata.go` "If ConsumerGroup is not set, use the 'consumerID'").
  Tags `{uuid}`, `{podName}`, `{namespace}` and `{appID}` are resolved per sidecar
  (`pkg/runtime/meta/meta.go` ToBaseMetadata). The members of a group split the partitions
  of a topic (sarama's default `range` strategy, `kafka.go` initConsumerGroupRebalanceStrategy).
- **Serial delivery per partition.** `ConsumeClaim` in `common/component/kafka/consumer.go`
  hands one message of a partition at a time to daprd and only then reads the next, so a
  delivery is offered only when no earlier delivery of the same group, topic and partition is
  still pending: a message waiting for a retry holds its whole partition.
- **Offsets.** A partition is a log: each message gets the partition's next offset when it is
  stored (what `GetEventMetadata` reports as `__offset`), and a bulk publish (`BulkPublish` in
  `producer.go`, one `SendMessages`) stores its messages together.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .goformats import parse_bool, parse_duration
from .store_pg import PgStore

PENDING = "pending"
DEFAULT_PARTITIONS = 3  # chart/values.yaml redpanda.topics.partitions

# Metadata keys read by `Publish` (common/component/kafka/metadata.go: key, keyMetadataKey, partitionNumberKey).
KEY_METADATA = ("partitionKey", "__key")
PARTITION_NUMBER_METADATA = "partitionNumber"


class PartitionError(ValueError):
    """The producer refused the message (bad or out-of-range `partitionNumber`)."""


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bits (Go's hash/fnv New32a, the hasher of sarama's hash partitioner)."""
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def partition_for_key(key: str, partitions: int) -> int:
    """sarama hashPartitioner.Partition without referenceAbs: `int32(h) % n`, negated if negative."""
    signed = fnv1a_32(key.encode("utf-8"))
    if signed >= 1 << 31:
        signed -= 1 << 32
    return abs(signed) % partitions  # Go's % truncates toward zero, so |int32(h) % n| == |h| % n


def message_key(metadata: Mapping[str, str]) -> str | None:
    """The Kafka message key: `partitionKey` or `__key` metadata (an empty value still is a key)."""
    for name in KEY_METADATA:
        if name in metadata:
            return metadata[name]
    return None


def choose_partition(metadata: Mapping[str, str], partitions: int, rng: random.Random) -> int:
    """The partition `Publish` + the producer's partitioner pick for a message."""
    explicit = metadata.get(PARTITION_NUMBER_METADATA)
    if explicit is not None:
        # producer.go parsePartitionNumber + partitioner.go daprPartitioner.Partition (v1.18).
        try:
            number = int(explicit, 10)
        except ValueError:
            raise PartitionError(f'invalid partitionNumber metadata value "{explicit}"') from None
        if number < 0:
            raise PartitionError(f"partitionNumber must be non-negative, got {number}")
        if number >= partitions:
            raise PartitionError(f"partition number {number} is out of range, topic has {partitions} partitions")
        return number
    key = message_key(metadata)
    if key is None:
        return rng.randrange(partitions)  # sarama's random partitioner for a nil key
    return partition_for_key(key, partitions)


def _lookup(metadata: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive metadata lookup (mapstructure and kit's GetMetadataProperty ignore case)."""
    lowered = name.lower()
    for key, value in metadata.items():
        if key.lower() == lowered:
            return value
    return None


@dataclass(frozen=True)
class ComponentBackOff:
    """The Kafka component's own retry of a failed handler (`backOff*` metadata, dapr/kit `retry.Config`).

    Defaults from dapr/kit `retry/retry.go` DefaultConfig: constant 5s, `maxRetries` -1 (for
    ever); exponential: initialInterval 500ms, multiplier 1.5, randomizationFactor 0.5,
    maxInterval 60s, maxElapsedTime 15m (cenkalti/backoff v4 defaults). Integer durations are
    milliseconds (dapr/kit `config/decode.go`).
    """

    policy: str = "constant"
    duration: float = 5.0
    initial_interval: float = 0.5
    multiplier: float = 1.5
    randomization_factor: float = 0.5
    max_interval: float = 60.0
    max_elapsed_time: float = 900.0
    max_retries: int = -1

    @staticmethod
    def _seconds(text: str) -> float:
        text = text.strip()
        if text.lstrip("-").isdigit():
            return int(text) / 1000.0
        return parse_duration(text).total_seconds()

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ComponentBackOff:
        values: dict[str, Any] = {}
        durations = {
            "duration": "backOffDuration",
            "initial_interval": "backOffInitialInterval",
            "max_interval": "backOffMaxInterval",
            "max_elapsed_time": "backOffMaxElapsedTime",
        }
        for attr, name in durations.items():
            text = _lookup(metadata, name)
            if text:
                values[attr] = cls._seconds(text)
        for attr, name in (("multiplier", "backOffMultiplier"), ("randomization_factor", "backOffRandomizationFactor")):
            text = _lookup(metadata, name)
            if text:
                values[attr] = float(text)
        text = _lookup(metadata, "backOffMaxRetries")
        if text:
            values["max_retries"] = int(text)
        text = _lookup(metadata, "backOffPolicy")
        if text:
            if text.lower() not in ("constant", "exponential"):
                raise ValueError(f"unexpected back off policy type: {text}")
            values["policy"] = text.lower()
        return cls(**values)

    def delay(self, retry: int, elapsed: float, rng: random.Random) -> float | None:
        """Seconds before retry number `retry` (1 = first), or None when the back-off gives up."""
        if 0 <= self.max_retries < retry:
            return None
        if self.policy == "constant":
            return self.duration
        if self.max_elapsed_time > 0 and elapsed > self.max_elapsed_time:
            return None
        interval = min(self.initial_interval * self.multiplier ** (retry - 1), self.max_interval)
        spread = self.randomization_factor * interval
        return rng.uniform(interval - spread, interval + spread)


@dataclass(frozen=True)
class KafkaComponent:
    """What the double takes from one `pubsub.kafka` Component's metadata."""

    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def consume_retry_enabled(self) -> bool:
        # pubsub/kafka/kafka.go sets DefaultConsumeRetryEnabled = true (bindings use false).
        text = _lookup(self.metadata, "consumeRetryEnabled")
        return parse_bool(text) if text else True

    def back_off(self) -> ComponentBackOff:
        return ComponentBackOff.from_metadata(self.metadata)

    def resolve(self, value: str, *, app_id: str, pod: str, namespace: str, uuids: dict[str, str]) -> str:
        """Resolve `{uuid}`, `{podName}`, `{namespace}`, `{appID}` as pkg/runtime/meta/meta.go does.

        `{uuid}` is drawn once per sidecar start; `uuids` keeps it per (pod, property).
        """
        while "{uuid}" in value:
            value = value.replace("{uuid}", uuids.setdefault(f"{pod}/{value}", str(uuid.uuid4())), 1)
        value = value.replace("{podName}", pod)
        value = value.replace("{namespace}", f"{namespace}.{app_id}")
        return value.replace("{appID}", app_id)

    def consumer_group(self, *, app_id: str, pod: str, namespace: str, uuids: dict[str, str]) -> str:
        """consumerGroup, else consumerID (daprd defaults consumerID to the app id)."""
        for name in ("consumerGroup", "consumerID"):
            raw = _lookup(self.metadata, name)
            if raw is not None:
                resolved = self.resolve(raw, app_id=app_id, pod=pod, namespace=namespace, uuids=uuids).strip()
                if resolved:
                    return resolved
        return app_id

    def scoped_topics(self, scope: str, app_id: str) -> list[str]:
        """pkg/scopes GetScopedTopics: `app1=t1,t2;app2=t3` -> this app's topics (spaces removed)."""
        text = _lookup(self.metadata, scope)
        topics: list[str] = []
        if not text:
            return topics
        for entry in text.replace(" ", "").split(";"):
            parts = entry.split("=")
            if len(parts) < 2 or parts[0] != app_id:
                continue
            for topic in parts[1].split(","):
                if topic not in topics:
                    topics.append(topic)
        return topics

    def param_topics(self, name: str) -> list[str]:
        """pkg/scopes getParamTopics (allowedTopics, protectedTopics)."""
        text = _lookup(self.metadata, name)
        topics: list[str] = []
        for topic in (text or "").replace(" ", "").split(","):
            if text and topic not in topics:
                topics.append(topic)
        return topics

    def operation_allowed(self, topic: str, scoped_topics: list[str]) -> bool:
        """pkg/runtime/pubsub/adapter.go IsOperationAllowed."""
        allowed = self.param_topics("allowedTopics")
        if allowed and topic not in allowed:
            return False
        protected = topic in self.param_topics("protectedTopics")
        if not protected and not scoped_topics:
            return True
        return topic in scoped_topics

    def may_publish(self, app_id: str, topic: str) -> bool:
        return self.operation_allowed(topic, self.scoped_topics("publishingScopes", app_id))

    def may_subscribe(self, app_id: str, topic: str) -> bool:
        return self.operation_allowed(topic, self.scoped_topics("subscriptionScopes", app_id))


def range_assignment(partitions: int, members: list[str]) -> dict[int, str]:
    """sarama's range balance strategy for one topic: contiguous partition ranges, in member order."""
    owners: dict[int, str] = {}
    if not members:
        return owners
    step, extra = divmod(partitions, len(members))
    start = 0
    for index, member in enumerate(members):
        count = step + (1 if index < extra else 0)
        for partition in range(start, start + count):
            owners[partition] = member
        start += count
    return owners


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
    partition: int = 0

    @property
    def cloud_event(self) -> dict[str, Any] | None:
        """The CloudEvent envelope, or None for a raw (`rawPayload=true`) message."""
        return None if self.raw else json.loads(self.data)


@dataclass(frozen=True)
class Outgoing:
    """A message a producer sends: its bytes, its publish metadata, and whether it is raw."""

    data: bytes
    metadata: Mapping[str, str]
    raw: bool = False


@dataclass(frozen=True)
class PendingDelivery:
    id: int
    group: str
    app_id: str
    attempts: int
    message: BrokerMessage
    redeliveries: int = 0
    first_failed_at: datetime | None = None


@dataclass(frozen=True)
class Subscriber:
    """One consumer group that receives a message, and the app id it is recorded under."""

    group: str
    app_id: str


class Broker:
    def __init__(self, pg: PgStore, *, partitions: int = DEFAULT_PARTITIONS, rng: random.Random | None = None) -> None:
        if partitions < 1:
            raise ValueError("a topic needs at least one partition")
        self._pg = pg
        self.partitions = partitions
        self.rng = rng or random.Random()

    async def append(
        self,
        *,
        pubsub: str,
        topic: str,
        data: bytes,
        metadata: Mapping[str, str],
        raw: bool,
        subscribers: Iterable[Subscriber | str],
        now: datetime,
        not_before: datetime,
    ) -> BrokerMessage:
        """Store a message and one delivery per consumer group, atomically.

        A plain string subscriber is an app id in its default consumer group (its app id).
        Raises PartitionError when the producer would refuse the message.
        """
        (stored,) = await self.append_many(
            pubsub=pubsub, topic=topic, messages=[Outgoing(data, metadata, raw)],
            subscribers=subscribers, now=now, not_before=not_before,
        )  # fmt: skip
        if isinstance(stored, PartitionError):
            raise stored
        return stored

    async def append_many(
        self,
        *,
        pubsub: str,
        topic: str,
        messages: Sequence[Outgoing],
        subscribers: Iterable[Subscriber | str],
        now: datetime,
        not_before: datetime,
    ) -> list[BrokerMessage | PartitionError]:
        """The producer's SendMessages (a bulk publish): store the messages the partitioner
        accepts, in order, with one delivery per consumer group each, in one transaction; the
        result has, per message, what was stored or the partitioner's error for it.

        Each partition is a log: its next offset is reserved under the partition's row lock,
        and sequence numbers are drawn after it, so offsets and sequence numbers agree within
        a partition even when producers append concurrently (as the partition leader orders
        a partition's writes)."""
        groups = [Subscriber(s, s) if isinstance(s, str) else s for s in subscribers]
        placed: list[int | PartitionError] = []
        for message in messages:
            try:
                placed.append(choose_partition(message.metadata, self.partitions, self.rng))
            except PartitionError as exc:
                placed.append(exc)
        counts = Counter(p for p in placed if isinstance(p, int))
        if not counts:
            return [p for p in placed if isinstance(p, PartitionError)]
        async with self._pg.pool.acquire() as conn, conn.transaction():
            next_offset: dict[int, int] = {}
            for partition in sorted(counts):  # one lock order, so two producers cannot deadlock
                end = await conn.fetchval(
                    f"INSERT INTO {self._pg.table('partition_ends')} AS e (pubsub, topic, partition, next_offset) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (pubsub, topic, partition) "
                    "DO UPDATE SET next_offset = e.next_offset + EXCLUDED.next_offset RETURNING next_offset",
                    pubsub, topic, partition, counts[partition],
                )  # fmt: skip
                next_offset[partition] = int(end) - counts[partition]
            seqs = [
                int(r[0])
                for r in await conn.fetch(
                    f"SELECT nextval(pg_get_serial_sequence('{self._pg.table('messages')}', 'seq')) "
                    "FROM generate_series(1, $1) ORDER BY 1",
                    sum(counts.values()),
                )
            ]
            rows: list[tuple[Any, ...]] = []
            stored: list[BrokerMessage | PartitionError] = []
            taken = iter(seqs)
            for message, partition in zip(messages, placed, strict=True):
                if isinstance(partition, PartitionError):
                    stored.append(partition)
                    continue
                seq, offset = next(taken), next_offset[partition]
                next_offset[partition] = offset + 1
                key = message_key(message.metadata)
                meta = dict(message.metadata)
                rows.append((seq, key, partition, offset, message.raw, message.data, json.dumps(meta)))
                stored.append(BrokerMessage(seq, pubsub, topic, key, message.raw, message.data, meta, now, partition))
            await conn.execute(
                f"INSERT INTO {self._pg.table('messages')} "
                "(seq, pubsub, topic, partition_key, partition, partition_offset, raw, data, metadata, published_at) "
                "SELECT r.seq, $1, $2, r.partition_key, r.partition, r.partition_offset, r.raw, r.data, r.metadata::jsonb, $3 "
                "FROM unnest($4::bigint[], $5::text[], $6::int[], $7::bigint[], $8::bool[], $9::bytea[], $10::text[]) "
                "AS r(seq, partition_key, partition, partition_offset, raw, data, metadata)",
                pubsub, topic, now, *(list(column) for column in zip(*rows, strict=True)),
            )  # fmt: skip
            if groups:
                await conn.execute(
                    f"INSERT INTO {self._pg.table('deliveries')} "
                    "(seq, group_id, app_id, pubsub, topic, partition, partition_key, not_before) "
                    "SELECT r.seq, g.group_id, g.app_id, $1, $2, r.partition, r.partition_key, $3 "
                    "FROM unnest($4::bigint[], $5::int[], $6::text[]) AS r(seq, partition, partition_key) "
                    "CROSS JOIN unnest($7::text[], $8::text[]) AS g(group_id, app_id) ORDER BY r.seq",
                    pubsub, topic, not_before, [r[0] for r in rows], [r[2] for r in rows], [r[1] for r in rows],
                    [g.group for g in groups], [g.app_id for g in groups],
                )  # fmt: skip
        return stored

    async def heads(self, now: datetime, exclude: Collection[int]) -> tuple[list[PendingDelivery], datetime | None]:
        """Each claim's (consumer group, topic, partition) head: its first pending delivery,
        which blocks the rest of the claim while it is in flight or waits for a retry. Returns
        the heads not in `exclude` that are due at `now`, in sequence order, and the earliest
        time one of the others becomes due (None if none waits)."""
        d, m = self._pg.table("deliveries"), self._pg.table("messages")
        rows = await self._pg.pool.fetch(
            f"WITH heads AS (SELECT DISTINCT ON (pubsub, topic, group_id, partition) id FROM {d} "
            f"WHERE status = '{PENDING}' ORDER BY pubsub, topic, group_id, partition, seq) "
            "SELECT d.id, d.group_id, d.app_id, d.attempts, d.redeliveries, d.first_failed_at, d.not_before, "
            "m.seq, m.pubsub, m.topic, m.partition_key, m.partition, m.raw, "
            "CASE WHEN d.not_before <= $2 THEN m.data END AS data, m.metadata::text AS metadata, m.published_at "
            f"FROM heads h JOIN {d} d ON d.id = h.id JOIN {m} m ON m.seq = d.seq "
            "WHERE NOT (d.id = ANY($1::bigint[])) ORDER BY d.seq",
            list(exclude),
            now,
        )
        due = [_pending(r) for r in rows if r["not_before"] <= now]
        later = [r["not_before"] for r in rows if r["not_before"] > now]
        return due, min(later, default=None)

    async def claim_backlog(
        self, head: PendingDelivery, exclude: Collection[int], limit: int
    ) -> list[tuple[PendingDelivery, int]]:
        """The pending deliveries of `head`'s claim (consumer group, topic, partition), in offset
        order from `head` on, at most `limit`, each with its partition offset.

        This is what the Kafka component's bulk ConsumeClaim has read from the claim's channel
        while no flush runs (see bulk_subscribe.py). The offset is the message's position in its
        partition (what `GetEventMetadata` reports as `__offset`).
        """
        d, m = self._pg.table("deliveries"), self._pg.table("messages")
        rows = await self._pg.pool.fetch(
            f"SELECT d.id, d.group_id, d.app_id, d.attempts, d.redeliveries, d.first_failed_at, m.seq, m.pubsub, "
            "m.topic, m.partition_key, m.partition, m.raw, m.data, m.metadata::text AS metadata, m.published_at, "
            "m.partition_offset "
            f"FROM {d} d JOIN {m} m ON m.seq = d.seq "
            f"WHERE d.status = '{PENDING}' AND NOT (d.id = ANY($1::bigint[])) AND d.group_id = $2 "
            "AND d.pubsub = $3 AND d.topic = $4 AND d.partition = $5 AND d.seq >= $6 ORDER BY d.seq LIMIT $7",
            list(exclude),
            head.group,
            head.message.pubsub,
            head.message.topic,
            head.message.partition,
            head.message.seq,
            limit,
        )
        return [
            (
                _pending(r),
                int(r["partition_offset"]),
            )
            for r in rows
        ]

    async def settle(
        self, delivery_id: int, status: str, attempts: int, *, app_id: str | None = None, pod: str | None = None
    ) -> None:
        """Mark a delivery as finished (acked, dropped, dead-lettered, failed or unsubscribed)."""
        await self._pg.pool.execute(
            f"UPDATE {self._pg.table('deliveries')} SET status = $2, attempts = $3, "
            "app_id = coalesce($4, app_id), pod = coalesce($5, pod) WHERE id = $1",
            delivery_id,
            status,
            attempts,
            app_id,
            pod,
        )

    async def settle_many(self, settled: Sequence[tuple[int, str, int]], *, app_id: str, pod: str | None) -> None:
        """Mark several deliveries (id, status, attempts) as finished, in one statement: the
        offsets a consumer marks after one handler call."""
        await self._pg.pool.execute(
            f"UPDATE {self._pg.table('deliveries')} AS d SET status = s.status, attempts = s.attempts, "
            "app_id = $4, pod = coalesce($5, d.pod) "
            "FROM unnest($1::bigint[], $2::text[], $3::int[]) AS s(id, status, attempts) WHERE d.id = s.id",
            [i for i, _, _ in settled], [st for _, st, _ in settled], [a for _, _, a in settled], app_id, pod,
        )  # fmt: skip

    async def reschedule(
        self,
        delivery_id: int,
        attempts: int,
        not_before: datetime,
        *,
        redeliveries: int | None = None,
        first_failed_at: datetime | None = None,
        app_id: str | None = None,
        pod: str | None = None,
    ) -> None:
        await self._pg.pool.execute(
            f"UPDATE {self._pg.table('deliveries')} SET attempts = $2, not_before = $3, "
            "redeliveries = coalesce($4, redeliveries), first_failed_at = coalesce(first_failed_at, $5), "
            "app_id = coalesce($6, app_id), pod = coalesce($7, pod) WHERE id = $1",
            delivery_id,
            attempts,
            not_before,
            redeliveries,
            first_failed_at,
            app_id,
            pod,
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


def _pending(r: Any) -> PendingDelivery:
    """A pending delivery and its message from one joined deliveries/messages row."""
    return PendingDelivery(
        r["id"],
        r["group_id"],
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
            r["partition"],
        ),
        r["redeliveries"],
        r["first_failed_at"],
    )
