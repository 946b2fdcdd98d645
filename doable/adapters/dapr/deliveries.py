"""What daprd POSTs to a subscription's route, and how the app answers it: one CloudEvent
(`{"status": ...}`), or, for a subscription declared with `bulkSubscribe`, a bulk of entries
(`{"statuses": [{"entryId", "status"}]}`).

The bulk side follows dapr/dapr v1.18.3 (the same in v1.16 and v1.17):
`pkg/runtime/subscription/bulksubscription.go` (the envelope, entries numbered in offset order),
`pkg/runtime/subscription/bulkresiliency.go` (a retry re-sends only the entries still failing),
`pkg/runtime/subscription/postman/http/http.go` DeliverBulk (the statuses; a missing one is a
RETRY). The sidecar double models the same (tests/dapr_double/bulk_subscribe.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from doable.domain.errors import Conflict, Unavailable
from doable.platform.logs import trace_id_from
from doable.ports.messages import MALFORMED_ATTRIBUTE, Job, JobBatchHandler, Message, Outcome, Subscription

log = structlog.get_logger("doable.callbacks")

BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
RAW_CONTENT_TYPE = "application/octet-stream"
# Declared for every batch-first subscription. 100 entries keep one bulk's handler call well
# inside daprd's delivery timeout; 50 ms is what a message may wait for its bulk to fill.
BULK_SUBSCRIBE = {"enabled": True, "maxMessagesCount": 100, "maxAwaitDurationMs": 50}
# The metadata that carries a message's partition key: the Kafka component's `__key`
# (components-contrib common/component/kafka/consumer.go GetEventMetadata), else the publish
# metadata other components hand back.
KEY_METADATA = ("__key", "partitionKey")


def message_from_cloudevent(envelope: Any) -> Message:
    """The Message inside a CloudEvent as daprd delivers it; ValueError if it is not one."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("id"), str) or not envelope["id"]:
        raise ValueError("not a CloudEvent: an object with an 'id' is required")
    data = envelope.get("data")
    if data is None and isinstance(envelope.get("data_base64"), str):
        try:
            data = base64.b64decode(envelope["data_base64"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("data_base64 is not base64 text") from exc
    if isinstance(data, str | bytes):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError("CloudEvent data must be a JSON object")
    trace = envelope.get("traceparent") or envelope.get("traceid")
    return Message(
        id=envelope["id"],
        topic=str(envelope.get("topic", "")),
        data=data,
        trace_id=trace_id_from(trace) if isinstance(trace, str) else None,
        attributes={k: v for k, v in envelope.items() if isinstance(v, str) and k not in ("data", "data_base64")},
    )


def stand_in_message(body: bytes, error: str) -> Message:
    """What a subscription with `dead_letters=False` gets for a delivery that is not a readable
    CloudEvent: its id (else a digest of the body, stable across redeliveries), its topic and string
    attributes when it has them, no data, and `error` in the MALFORMED_ATTRIBUTE attribute."""
    try:
        envelope: Any = json.loads(body)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {}
    given, topic = envelope.get("id"), envelope.get("topic")
    attributes = {k: v for k, v in envelope.items() if isinstance(v, str) and k not in ("data", "data_base64")}
    attributes[MALFORMED_ATTRIBUTE] = error
    return Message(
        id=given if isinstance(given, str) and given else "sha256:" + hashlib.sha256(body).hexdigest(),
        topic=topic if isinstance(topic, str) else "",
        data={},
        attributes=attributes,
    )


def is_bulk(envelope: Any) -> bool:
    """Whether a delivery is daprd's bulk envelope rather than one CloudEvent."""
    return (
        isinstance(envelope, dict)
        and isinstance(envelope.get("entries"), list)
        and (envelope.get("type") == BULK_EVENT_TYPE or "specversion" not in envelope)
    )


@dataclass(frozen=True)
class BulkEntry:
    """One entry of a bulk: its id, its partition key, and its message (None if unreadable)."""

    entry_id: str
    key: str
    message: Message | None
    error: str | None = None


def read_entries(envelope: dict[str, Any]) -> list[BulkEntry]:
    """The entries of a bulk envelope, in daprd's order (offset order within the partition).
    An entry without an id cannot be answered and is left out (daprd counts it a RETRY)."""
    entries: list[BulkEntry] = []
    for item in envelope["entries"]:
        if not isinstance(item, dict) or not isinstance(item.get("entryId"), str) or not item["entryId"]:
            continue
        given = item.get("metadata")
        metadata: dict[str, Any] = given if isinstance(given, dict) else {}
        key = next((str(metadata[k]) for k in KEY_METADATA if isinstance(metadata.get(k), str)), "")
        try:
            message = _entry_message(item, str(envelope.get("topic", "")))
        except ValueError as exc:
            entries.append(BulkEntry(item["entryId"], key, None, str(exc)))
            continue
        entries.append(BulkEntry(item["entryId"], key, message))
    return entries


def _entry_message(item: dict[str, Any], topic: str) -> Message:
    event = item.get("event")
    if item.get("contentType") == RAW_CONTENT_TYPE or isinstance(event, str):
        # rawPayload: the published bytes, base64-encoded (bulksubscription.go).
        if not isinstance(event, str):
            raise ValueError("a raw entry's event must be base64 text")
        try:
            raw = base64.b64decode(event, validate=True)
            value = json.loads(raw)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a raw entry's event is not base64 JSON") from exc
        if isinstance(value, dict) and "specversion" in value:
            return message_from_cloudevent(value)
        if not isinstance(value, dict):
            raise ValueError("a raw entry's payload must be a JSON object")
        # Not a CloudEvent, so no id of its own: a digest of the bytes is stable across redeliveries.
        return Message(id="sha256:" + hashlib.sha256(raw).hexdigest(), topic=topic, data=value)
    return message_from_cloudevent(event)


async def answer_bulk(sub: Subscription, entries: Sequence[BulkEntry]) -> list[tuple[str, Outcome]]:
    """Each entry's status for daprd, in order: the subscription's batch handler on the readable
    entries, then two rules that daprd's bulk handling calls for.

    - Per-key order: daprd re-sends only the entries still failing (bulkresiliency.go), so an entry
      answered SUCCESS after one of its key that failed would take effect before it. The entries
      after a RETRY of the same key answer RETRY too (a redelivery for those that succeeded,
      harmless: handlers are deduplicated or idempotent), as the in-process bus does.
    - Never DROP: DeliverBulk dead-letters a DROP entry by its index in the *whole* bulk within the
      entries of *this* request (`psm.PubSubMessages[EntryIdIndexMap[entryId]]`), which is another
      entry, or past the end (a panic), as soon as a retry re-sends fewer entries or daprd itself
      settled an earlier one (expired, unrouted). A message given up on (the handler's DROP, or an
      unexpected error when handled alone) answers RETRY instead; once the Resiliency policy's
      retries run out, daprd bulk-publishes the entries still failing, that one, to the dead-letter
      topic. It will not succeed, so it does not hold back the later ones of its key, which would
      otherwise go to the dead-letter topic with it.
    """
    readable = [e for e in entries if e.message is not None]
    verdicts = iter(await _settle(sub, readable) if readable else [])
    answers: list[tuple[str, Outcome]] = []
    blocked: set[str] = set()
    for entry in entries:
        if entry.message is None:
            log.error("events.malformed", subscription=sub.name, entry_id=entry.entry_id, error=entry.error)
            verdict = _GIVEN_UP
        else:
            verdict = next(verdicts, Outcome.RETRY)  # not attempted
        if entry.key in blocked:
            answers.append((entry.entry_id, Outcome.RETRY))
        elif verdict is _GIVEN_UP:
            if sub.dead_letters:
                answers.append((entry.entry_id, Outcome.RETRY))
            else:  # as the single route: nowhere to dead-letter it, and never a loop
                log.error("events.dead_letter_discarded", subscription=sub.name, entry_id=entry.entry_id)
                answers.append((entry.entry_id, Outcome.SUCCESS))
        elif verdict is Outcome.SUCCESS:
            answers.append((entry.entry_id, Outcome.SUCCESS))
        else:
            blocked.add(entry.key)
            answers.append((entry.entry_id, Outcome.RETRY))
    return answers


# A message given up on: the handler answered DROP, or raised an unexpected error handled alone.
_GIVEN_UP = "given up"


async def _settle(sub: Subscription, entries: list[BulkEntry]) -> list[Outcome | str]:
    """One verdict per entry (SUCCESS, RETRY or _GIVEN_UP; a shorter list: the rest were not
    attempted). If the batch handler raises, each message is handed alone, in order, skipping
    those behind a RETRY of their key (messaging.BatchHandler): an unexpected error then marks
    that message alone as given up. Unavailable: none could be handled, all are retried."""
    messages = [e.message for e in entries if e.message is not None]
    try:
        outcomes = await sub.handle_batch(messages)
    except Unavailable as exc:
        log.warning("events.unavailable", subscription=sub.name, count=len(messages), error=str(exc))
        return []
    except Exception as exc:
        log.warning(
            "events.batch_failed", subscription=sub.name, count=len(messages),
            error=f"{type(exc).__name__}: {exc}", exc_info=True,
        )  # fmt: skip
    else:
        return [_GIVEN_UP if o is Outcome.DROP else o for o in outcomes]
    verdicts: list[Outcome | str] = []
    blocked: set[str] = set()
    for entry, message in zip(entries, messages, strict=True):
        if entry.key in blocked:
            verdicts.append(Outcome.RETRY)
            continue
        verdict: Outcome | str
        try:
            answered = await sub.handle_batch([message])
            verdict = answered[0] if answered else Outcome.RETRY
        except (Conflict, Unavailable):
            verdict = Outcome.RETRY
        except Exception as exc:
            log.warning(
                "events.handler_failed", subscription=sub.name, message_id=message.id,
                error=f"{type(exc).__name__}: {exc}", exc_info=True,
            )  # fmt: skip
            verdict = _GIVEN_UP
        if verdict is Outcome.DROP:
            verdict = _GIVEN_UP
        if verdict is Outcome.RETRY:
            blocked.add(entry.key)
        verdicts.append(verdict)
    return verdicts


# How long a job trigger waits for others to join its batch. daprd triggers every job that fell due
# at once, each in a goroutine and its own HTTP request (dapr/dapr v1.18.3
# pkg/runtime/scheduler/internal/cluster/streamer.go receive), so the triggers of one instant
# arrive within a few milliseconds of each other.
JOB_BATCH_WINDOW_SECONDS = 0.01
JOB_BATCH_MAX = 100
# Batches handled at once. The triggers that arrive while this many run wait and go together in
# the next batch, so under load batches grow instead of queueing one small batch per trigger; each
# batch makes a few sidecar calls, far below the sidecar client's connection pool.
JOB_BATCHES_IN_FLIGHT = 16


class JobBatches:
    """A job trigger handler (`POST /job/{name}`, one job per request) that hands the jobs whose
    triggers arrive together to a batch handler in one call: a reminder job's claim, task lookup,
    publish and finish then cost a few sidecar calls per batch instead of per job. At most
    `in_flight` batches run at once; the triggers that arrive meanwhile form the next batch, which
    starts as soon as one ends (at most `most` jobs each).

    Each trigger still answers for its own job: its outcome from the batch, or, if the batch
    handler raises, that error (Dapr then retries every job of the batch under its failure
    policy, as it would each of them alone). A trigger whose request is cancelled leaves the
    batch to run for the others."""

    def __init__(
        self,
        handle_batch: JobBatchHandler,
        *,
        window: float = JOB_BATCH_WINDOW_SECONDS,
        most: int = JOB_BATCH_MAX,
        in_flight: int = JOB_BATCHES_IN_FLIGHT,
    ) -> None:
        self._handle_batch = handle_batch
        self._window = window
        self._most = most
        self._in_flight = in_flight
        self._waiting: list[tuple[Job, asyncio.Future[Outcome]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, job: Job) -> Outcome:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((job, answer))
        if len(self._waiting) >= self._most:
            self._start()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._start)
        return await answer

    def _start(self) -> None:
        """Start the next batch, if a slot is free; else it starts when a running batch ends."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting or len(self._running) >= self._in_flight:
            return
        batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)  # a reference, so the task is not collected while it runs
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        # What waited for the slot has waited long enough: no window.
        self._start()

    async def _run(self, batch: list[tuple[Job, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self._handle_batch([job for job, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"the batch handler answered {len(outcomes)} outcomes for {len(batch)} jobs")
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if not answer.done():
                answer.set_result(outcome)
