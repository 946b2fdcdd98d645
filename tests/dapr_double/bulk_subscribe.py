"""Bulk subscribe: daprd's bulk handler over the Kafka component's bulk consumer.

Sources (dapr/dapr v1.16.19, v1.17.13, v1.18.3 — the bulk code only changed in style and in the
dead-letter publish deadline between them; dapr/components-contrib v1.16.13, v1.17.8, v1.18.4):

**The Kafka component** (`common/component/kafka/consumer.go` ConsumeClaim, bulk branch):

- One loop per *claim* (consumer group member x topic partition). It appends each message read
  from the claim to a buffer and flushes when the buffer holds `maxMessagesCount`, or when a ticker
  of period `maxAwaitDurationMs` fires (a flush on an empty buffer does nothing). The ticker runs
  from the claim's start and is `Reset` after a count flush; a tick that fell while a flush ran is
  delivered once the loop reads again (Go collapses missed ticks). The double starts the ticker
  when the pod's subscriptions were loaded (`AppChannel.subscribed_at`); when a tick is due and
  the buffer is already full it takes the count flush (one of the orders Go's select allows).
- A flush (`flushBulkMessages`) is synchronous: nothing else of the partition is read meanwhile,
  so delivery stays serial per partition and consumer group (broker.py).
- `doBulkCallback` numbers the entries "0", "1", ... in offset order, with `GetEventMetadata`
  (`__key` when the message has a key, `__offset`, `__topic`, `__timestamp` in ms, `__partition`,
  then the Kafka headers, i.e. the publish metadata) and no content type. When the handler returns
  no error every message is marked; otherwise the prefix of entries without error is marked and
  the handler error goes to the component's retry: with `consumeRetryEnabled` (pubsub.kafka's
  default) `retry.NotifyRecover` calls `doBulkCallback` again with the *whole* batch (entries
  already answered SUCCESS reach the app again) under the `backOff*` policy; when that gives up,
  or without consumeRetryEnabled, the batch is left behind and the next batch's marks commit past
  it (recorded as "failed", as in delivery.py).
- Defaults when the subscription leaves a setting out (or gives <= 0): 80 messages, 10000 ms
  (`common/component/kafka/utils.go`, `pubsub/kafka/kafka.go` BulkSubscribe).

**daprd's bulk handler** (`pkg/runtime/subscription/bulksubscription.go` bulkSubscribeTopic):

- The bulk message's metadata is `{"pubsubName": <pubsub>}`. A `rawPayload` subscription metadata
  that does not parse sends every entry to the dead-letter topic (or fails them all).
- Per entry: a raw payload is routed as a string and sent base64-encoded with contentType
  "application/octet-stream"; otherwise the entry must unmarshal into a JSON object (else it is an
  error for that entry), an expired event is dead-lettered (errors ignored) and acknowledged, the
  rules pick a path (a CEL error is an error for that entry; no match: dead-lettered, errors
  ignored, and acknowledged), contentType "application/cloudevents+json", the event the parsed
  object. Entries are grouped by path.
- One request per path (`createEnvelopeAndInvokeSubscriber`; daprd walks a Go map, so the order of
  paths is unspecified — the double goes in first-entry order): `POST <path>`, content type
  application/json, body `{"entries":[{"entryId","event","metadata","contentType"}],"id","metadata",
  "pubsubname","topic","type":"com.dapr.event.sent.bulk"}` (`pkg/runtime/pubsub/bulksubscribe_events.go`,
  components-contrib `pubsub/envelope.go` DefaultBulkEventType), the bulk metadata as headers.
- Each path's request runs under the component's inbound policy with an accumulator
  (`pkg/runtime/subscription/bulkresiliency.go`): after every attempt the entries answered without
  error are removed, so a retry re-sends only the entries still failing.
- The app's answer (`pkg/runtime/subscription/postman/http/http.go` DeliverBulk): a transport
  error or a non-2xx other than 404 fails every entry of the request (a plain error, so
  `matching.httpStatusCodes` does not filter it); 404 acknowledges every entry without
  dead-lettering them; a 2xx body that does not decode as `{"statuses":[...]}` fails every entry;
  otherwise per entry SUCCESS acknowledges, DROP acknowledges and publishes that entry to the
  dead-letter topic (errors ignored), RETRY, an empty or unknown status and a missing entry are
  errors; statuses for entry ids not in the batch are ignored. daprd looks the DROP entry up by its
  index *in the whole batch* within the entries of *this request*: right on a first attempt of a
  single-path batch; on a retry or with several paths it dead-letters another entry, or indexes
  past the end (a Go panic: the double reports it as an internal failure, see `DaprdPanic`).
- After all paths, if any entry failed: with a dead-letter topic the failed entries (only them)
  are bulk-published there, as the subscriber, and then the whole batch is acknowledged; without
  one (or when that publish fails) the handler returns its error variable — which is the last
  entry's JSON error or the last path error, and can be nil (every message then gets marked,
  the failed entries included: recorded as "dropped").
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2

from . import cloudevents
from .apps import AppChannel
from .broker import Broker, BrokerMessage, PendingDelivery
from .goformats import parse_bool
from .subscriptions import RouteMatchError, Subscription, match_route

if TYPE_CHECKING:
    from .delivery import Deliverer

BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
OCTET_STREAM = "application/octet-stream"
ACKED, DROPPED, DEAD_LETTERED, FAILED = "acked", "dropped", "dead_lettered", "failed"


class DaprdPanic(RuntimeError):
    """What daprd does not survive (a Go panic in the consumer goroutine kills the process)."""


class EntryError(Exception):
    """An error recorded for one entry of a bulk (the Go `error` values of the response entries)."""


@dataclass
class _Entry:
    """One message of a batch: a Kafka `KafkaBulkMessageEntry` plus what the double tracks."""

    index: int
    delivery: PendingDelivery
    offset: int
    entry_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    item: dict[str, Any] | None = None  # the BulkSubscribeMessageItem sent to the app
    event: dict[str, Any] | None = None  # the parsed CloudEvent, for tracing and records
    fate: str | None = None  # acked / dropped / dead_lettered, decided in this handler call
    path: str | None = None  # the route it was sent to in this handler call

    @property
    def message(self) -> BrokerMessage:
        return self.delivery.message


@dataclass
class _Response:
    entry_id: str = ""
    error: BaseException | None = None


@dataclass
class _Call:
    """State of one bulk handler call (daprd's bulkResponses, entryIdIndexMap, ...)."""

    entries: list[_Entry]
    responses: list[_Response]
    index: dict[str, int]


@dataclass
class _Ticker:
    anchor: float
    next_tick: float


class BulkSubscriber:
    """Runs bulk subscriptions for the Deliverer: claim buffers, tickers and flushes."""

    def __init__(self, deliverer: Deliverer, broker: Broker) -> None:
        self._deliverer = deliverer
        self._broker = broker
        self._tickers: dict[tuple[Any, ...], _Ticker] = {}
        self._crashed: set[tuple[Any, ...]] = set()

    # -- the claim loop ------------------------------------------------------------------------

    @staticmethod
    def _claim(head: PendingDelivery, channel: AppChannel) -> tuple[Any, ...]:
        m = head.message
        return (head.group, m.pubsub, m.topic, m.partition, channel.app_id, channel.pod, channel.subscribed_at)

    def _ticker(self, claim: tuple[Any, ...], channel: AppChannel, period: float, now: float) -> _Ticker:
        ticker = self._tickers.get(claim)
        if ticker is None:
            # Ticks since the claim started found the buffer empty; the next one counts.
            anchor = channel.subscribed_at
            ticks = math.floor((now - anchor) / period) + 1 if now >= anchor else 1
            ticker = _Ticker(anchor, anchor + ticks * period)
            self._tickers[claim] = ticker
        return ticker

    async def offer(
        self,
        head: PendingDelivery,
        channel: AppChannel,
        subscription: Subscription,
        in_flight: set[int],
        start: Callable[[list[int], Any], None],
    ) -> float | None:
        """Flush the claim of `head` if its buffer is full or its ticker is due; else return the
        monotonic time of the next tick (None when a flush started or the claim is dead)."""
        claim = self._claim(head, channel)
        if claim in self._crashed:
            return None
        count = subscription.bulk.kafka_max_messages
        period = subscription.bulk.kafka_max_await_seconds
        now = time.monotonic()
        ticker = self._ticker(claim, channel, period, now)
        backlog = await self._broker.claim_backlog(head, in_flight, count)
        if not backlog:
            return ticker.next_tick
        if len(backlog) >= count:
            reason = "count"
        elif ticker.next_tick <= now:
            reason = "tick"
            ticker.next_tick = ticker.anchor + (math.floor((now - ticker.anchor) / period) + 1) * period
        else:
            return ticker.next_tick
        entries = [_Entry(i, d, offset) for i, (d, offset) in enumerate(backlog)]
        start([e.delivery.id for e in entries], self._flush(claim, channel, subscription, entries, reason, period))
        return None

    async def _flush(
        self,
        claim: tuple[Any, ...],
        channel: AppChannel,
        subscription: Subscription,
        entries: list[_Entry],
        reason: str,
        period: float,
    ) -> None:
        """consumer.go flushBulkMessages: the handler under the component's retry."""
        try:
            await self._flush_with_retries(channel, subscription, entries)
        except DaprdPanic:
            self._crashed.add(claim)
            raise
        finally:
            if reason == "count":
                ticker = self._tickers.get(claim)
                if ticker is not None:  # ticker.Reset after the flush returned
                    now = time.monotonic()
                    ticker.anchor, ticker.next_tick = now, now + period

    async def _flush_with_retries(self, channel: AppChannel, subscription: Subscription, entries: list[_Entry]) -> None:
        d = self._deliverer
        component = d.topology.component(entries[0].message.pubsub)
        started = time.monotonic()
        retry = 0
        while True:
            error, responses = await self._handle(channel, subscription, entries)
            marked = self._marked(entries, error, responses)
            if error is None:
                await self._settle(channel, entries, marked)
                await self._duplicate(channel, entries)
                return
            retry += 1
            delay = None
            if component.consume_retry_enabled():
                delay = component.back_off().delay(retry, time.monotonic() - started, d.rng)
            if delay is None:
                await self._settle(channel, entries, marked)
                return
            await asyncio.sleep(delay)

    async def _duplicate(self, channel: AppChannel, entries: list[_Entry]) -> None:
        """An injected duplicate (`DaprDouble.duplicate_deliveries`, one per bulk): the bulk's
        entries reach the app once more after they were marked, as when the consumer group
        rebalanced before the offsets were committed. The app's answer changes nothing."""
        d = self._deliverer
        if not d.faults.take_duplicate(channel.app_id, entries[0].message.topic):
            return
        by_path: dict[str, list[_Entry]] = {}
        for entry in entries:
            if entry.item is not None and entry.path is not None:
                by_path.setdefault(entry.path, []).append(entry)
        for path, group in by_path.items():
            bulk_id = str(uuid.uuid4())
            envelope = {"entries": [e.item for e in group], "id": bulk_id, "metadata": {"pubsubName": group[0].message.pubsub},
                        "pubsubname": group[0].message.pubsub, "topic": group[0].message.topic, "type": BULK_EVENT_TYPE}  # fmt: skip
            body = json.dumps(_go_sorted(envelope), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers = {"content-type": "application/json", "pubsubname": group[0].message.pubsub}
            statuses: dict[str, str] = {}
            code: int | None = None
            try:
                response = await channel.request("POST", path, content=body, headers=headers)
                code = response.status_code
                statuses = dict(_decode_app_bulk_response(response.content)) if 200 <= code <= 299 else {}
            except (httpx2.TransportError, ValueError):
                pass
            for entry in group:
                outcome = {"SUCCESS": "success", "DROP": "drop"}.get(statuses.get(entry.entry_id, ""), "retry")
                d.record_bulk(channel, entry.message, outcome, path=path, event=entry.event, status_code=code,
                              entry_id=entry.entry_id, bulk_id=bulk_id, duplicate=True)  # fmt: skip

    @staticmethod
    def _marked(entries: list[_Entry], error: BaseException | None, responses: list[_Response] | None) -> int:
        """doBulkCallback: how many messages, from the first, get MarkMessage."""
        if error is None:
            return len(entries)
        marked = 0
        for i, response in enumerate(responses or []):
            if response.entry_id != str(i) or response.error is not None:
                break  # "entry id mismatch" also stops marking
            marked += 1
        return marked

    async def _settle(self, channel: AppChannel, entries: list[_Entry], marked: int) -> None:
        settled = [
            (e.delivery.id, (e.fate or DROPPED) if e.index < marked else FAILED, e.delivery.attempts + 1)
            for e in entries
        ]
        await self._broker.settle_many(settled, app_id=channel.app_id, pod=channel.pod)

    # -- daprd's bulk handler ------------------------------------------------------------------

    async def _handle(
        self, channel: AppChannel, subscription: Subscription, entries: list[_Entry]
    ) -> tuple[BaseException | None, list[_Response] | None]:
        """bulksubscription.go bulkHandler for one doBulkCallback; returns (error, responses)."""
        d = self._deliverer
        message0 = entries[0].message
        pubsub = message0.pubsub
        bulk_metadata = {"pubsubName": pubsub}
        for entry in entries:
            entry.entry_id = str(entry.index)
            entry.metadata = _event_metadata(entry.message, entry.offset)
            entry.item, entry.event, entry.fate, entry.path = None, None, None, None
        call = _Call(entries, [_Response() for _ in entries], {})
        try:
            raw = parse_bool(subscription.raw_payload) if subscription.raw_payload else False
        except ValueError as exc:
            if subscription.dead_letter_topic and await self._bulk_dead_letter(channel, subscription, entries):
                for entry in entries:
                    entry.fate = DEAD_LETTERED
                return None, None
            for entry, response in zip(entries, call.responses, strict=True):
                if not response.entry_id:
                    response.entry_id, response.error = entry.entry_id, exc
            return exc, call.responses
        has_any_error = False
        err: BaseException | None = None  # Go's `err`, overwritten along the way
        paths: dict[str, list[_Entry]] = {}
        now = d.clock.now()
        for entry in entries:
            i = entry.index
            call.index[entry.entry_id] = i
            data = entry.message.data
            if raw:
                match_on: Any = data.decode("utf-8", errors="replace")
            else:
                try:
                    parsed = json.loads(data)
                    if parsed is not None and not isinstance(parsed, dict):
                        raise ValueError("json: cannot unmarshal into Go value of type map[string]interface {}")
                except ValueError as exc:
                    call.responses[i] = _Response(entry.entry_id, exc)
                    err = exc
                    has_any_error = True
                    d.record_bulk(channel, entry.message, "error", entry_id=entry.entry_id)
                    continue
                err = None
                entry.event = parsed
                if parsed is not None and cloudevents.has_expired(parsed, now):
                    d.record_bulk(channel, entry.message, "expired", event=parsed, entry_id=entry.entry_id)
                    await self._drop_to_dead_letter(channel, subscription, entry)
                    call.responses[i] = _Response(entry.entry_id, None)
                    continue
                match_on = parsed
            try:
                path = match_route(subscription.rules, match_on)
            except RouteMatchError as exc:
                call.responses[i] = _Response(entry.entry_id, exc)
                has_any_error = True
                d.record_bulk(channel, entry.message, "error", event=entry.event, entry_id=entry.entry_id)
                continue
            if path is None:
                d.record_bulk(channel, entry.message, "unrouted", event=entry.event, entry_id=entry.entry_id)
                await self._drop_to_dead_letter(channel, subscription, entry)
                call.responses[i] = _Response(entry.entry_id, None)
                continue
            if raw:
                event: Any = base64.b64encode(data).decode("ascii")
                content_type = OCTET_STREAM
            else:
                event = entry.event
                content_type = cloudevents.CLOUD_EVENT_CONTENT_TYPE
            entry.item = {"entryId": entry.entry_id, "event": event, "metadata": entry.metadata,
                          "contentType": content_type}  # fmt: skip
            entry.path = path
            paths.setdefault(path, []).append(entry)
        for path, group in paths.items():
            invoke_error = await self._invoke(channel, subscription, call, group, path, bulk_metadata)
            if invoke_error is not None:
                has_any_error = True
                err = invoke_error
        if has_any_error:
            failed = [e for e in entries if call.responses[call.index.get(e.entry_id, e.index)].error is not None]
            if subscription.dead_letter_topic and await self._bulk_dead_letter(channel, subscription, failed):
                for entry in failed:
                    entry.fate = DEAD_LETTERED
                return None, None
        return err, call.responses

    async def _invoke(
        self,
        channel: AppChannel,
        subscription: Subscription,
        call: _Call,
        group: list[_Entry],
        path: str,
        bulk_metadata: dict[str, str],
    ) -> BaseException | None:
        """bulkresiliency.go applyBulkSubscribeResiliency: one path's request under the inbound
        policy; the accumulator drops the entries answered without error before the next attempt."""
        d = self._deliverer
        pending = list(group)
        envelope_id = str(uuid.uuid4())
        pubsub = group[0].message.pubsub

        async def operation() -> None:
            answers: list[_Response] = []
            try:
                await self._deliver_bulk(
                    channel, subscription, call, pending, path, envelope_id, bulk_metadata, answers
                )
            finally:
                for answer in answers:  # the accumulator
                    if answer.entry_id in call.index:
                        call.responses[call.index[answer.entry_id]] = _Response(answer.entry_id, answer.error)
                pending[:] = [e for e in pending if call.responses[call.index[e.entry_id]].error is not None]

        inbound = d.topology.inbound_policy(channel.app_id, pubsub)
        run_error: BaseException | None = None
        try:
            await (inbound.run(operation) if inbound is not None else operation())
        except (asyncio.CancelledError, DaprdPanic):
            raise
        except Exception as exc:
            run_error = exc
        for entry_id, i in call.index.items():  # "setting error if any entry has not been yet touched"
            if not call.responses[i].entry_id:
                call.responses[i] = _Response(entry_id, run_error)
        return run_error

    async def _deliver_bulk(
        self,
        channel: AppChannel,
        subscription: Subscription,
        call: _Call,
        pending: list[_Entry],
        path: str,
        envelope_id: str,
        bulk_metadata: dict[str, str],
        answers: list[_Response],
    ) -> None:
        """postman/http/http.go DeliverBulk. Appends one answer per entry; raises on any error."""
        d = self._deliverer
        message0 = (pending or call.entries)[0].message  # a retry may re-send no entry at all
        envelope = {
            "entries": [e.item for e in pending],
            "id": envelope_id,
            "metadata": dict(sorted(bulk_metadata.items())),
            "pubsubname": message0.pubsub,
            "topic": message0.topic,
            "type": BULK_EVENT_TYPE,
        }
        body = json.dumps(_go_sorted(envelope), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in bulk_metadata.items()}}
        trace = None
        for entry in pending:  # the request carries the span of the last traced entry
            event = entry.event or {}
            value = event.get("traceparent") or event.get("traceid")
            if isinstance(value, str):
                trace = value
        if trace is not None:
            headers["traceparent"] = cloudevents.child_traceparent(trace)

        def fail_all(error: BaseException, outcome: str, status: int | None) -> None:
            for entry in pending:
                answers.append(_Response(entry.entry_id, error))
                d.record_bulk(channel, entry.message, outcome, path=path, event=entry.event, status_code=status,
                              entry_id=entry.entry_id, bulk_id=envelope_id)  # fmt: skip

        if d.faults.take_lost(channel.app_id, message0.topic):
            error = EntryError("error from app channel while sending pub/sub event to app: lost")
            fail_all(error, "lost", None)
            raise error
        try:
            response = await channel.request("POST", path, content=body, headers=headers)
        except httpx2.TransportError as exc:
            error = EntryError(f"error from app channel while sending pub/sub event to app: {exc}")
            fail_all(error, "error", None)
            raise error from exc
        code = response.status_code
        if 200 <= code <= 299:
            try:
                statuses = _decode_app_bulk_response(response.content)
            except ValueError as exc:
                error = EntryError(f"failed unmarshalling app response for bulk subscribe: {exc}")
                fail_all(error, "retry", code)
                raise error from exc
            await self._apply_statuses(channel, subscription, call, pending, path, envelope_id, statuses, answers, code)
            if any(a.error is not None for a in answers):
                raise EntryError("few message(s) have failed during bulk subscribe operation")
            return
        if code == 404:
            # "Non-retriable error": every entry acknowledged, none dead-lettered.
            for entry in pending:
                answers.append(_Response(entry.entry_id, None))
                entry.fate = DROPPED
                d.record_bulk(channel, entry.message, "drop", path=path, event=entry.event, status_code=code,
                              entry_id=entry.entry_id, bulk_id=envelope_id)  # fmt: skip
            return
        error = EntryError(
            f"Retriable error returned from app while processing bulk pub/sub event, topic: {message0.topic}. "
            f"status code returned: {code}"
        )
        fail_all(error, "retry", code)
        raise error

    async def _apply_statuses(
        self,
        channel: AppChannel,
        subscription: Subscription,
        call: _Call,
        pending: list[_Entry],
        path: str,
        envelope_id: str,
        statuses: list[tuple[str, str]],
        answers: list[_Response],
        code: int,
    ) -> None:
        d = self._deliverer
        received: set[str] = set()
        by_id = {e.entry_id: e for e in call.entries}
        for entry_id, status in statuses:
            if entry_id not in call.index:
                continue  # "Invalid entry id received from app"
            entry = by_id[entry_id]
            received.add(entry_id)
            outcome = "retry"
            if status in ("", "RETRY"):
                answers.append(_Response(entry_id, EntryError(
                    f"RETRY required while processing bulk subscribe event for entry id: {entry_id}")))  # fmt: skip
            elif status == "SUCCESS":
                answers.append(_Response(entry_id, None))
                entry.fate, outcome = ACKED, "success"
            elif status == "DROP":
                answers.append(_Response(entry_id, None))
                entry.fate, outcome = DROPPED, "drop"
                if subscription.dead_letter_topic:
                    index = call.index[entry_id]
                    if index >= len(pending):
                        raise DaprdPanic(
                            f"daprd {d.topology.version_tag} panics here: DeliverBulk dead-letters a DROP entry by its index "
                            f"in the whole batch ({index}) within the {len(pending)} entries of this request "
                            "(postman/http/http.go: psm.PubSubMessages[EntryIdIndexMap[entryId]]: index out of range)"
                        )
                    if await self._drop_to_dead_letter(channel, subscription, pending[index], fate_of=entry):
                        entry.fate = DEAD_LETTERED
            else:
                answers.append(_Response(entry_id, EntryError(
                    f"unknown status returned from app while processing bulk subscribe event {entry_id}: {status}")))  # fmt: skip
            d.record_bulk(channel, entry.message, outcome, path=path, event=entry.event, status_code=code,
                          entry_id=entry_id, bulk_id=envelope_id)  # fmt: skip
        for entry in pending:
            if entry.entry_id not in received:
                answers.append(_Response(entry.entry_id, EntryError(
                    "response not received, RETRY required while processing bulk subscribe event for entry id: "
                    f"{entry.entry_id}")))  # fmt: skip
                d.record_bulk(channel, entry.message, "retry", path=path, event=entry.event, status_code=code,
                              entry_id=entry.entry_id, bulk_id=envelope_id)  # fmt: skip

    # -- dead letters ----------------------------------------------------------------------------

    async def _drop_to_dead_letter(
        self, channel: AppChannel, subscription: Subscription, source: _Entry, *, fate_of: _Entry | None = None
    ) -> bool:
        """sendToDeadLetter for an expired, unrouted or DROP entry: errors are ignored.

        Publishes `source`'s bytes with its event metadata; marks `fate_of` (default `source`)."""
        target = fate_of or source
        if target.fate is None:
            target.fate = DROPPED
        if not subscription.dead_letter_topic:
            return False
        try:
            await self._deliverer.topology.publish(
                channel.app_id, source.message.pubsub, subscription.dead_letter_topic, source.message.data,
                source.metadata, raw=source.message.raw,
            )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        target.fate = DEAD_LETTERED
        return True

    async def _bulk_dead_letter(self, channel: AppChannel, subscription: Subscription, entries: list[_Entry]) -> bool:
        """sendBulkToDeadLetter: the entries' original bytes, bulk-published as the subscriber."""
        from .bulk_publish import BulkEntry

        entries_to_send = [
            BulkEntry(e.entry_id, e.message.data, "", dict(e.metadata), raw=e.message.raw) for e in entries
        ]
        pubsub = subscription.pubsub
        try:
            await self._deliverer.topology.bulk_publish(
                channel.app_id, pubsub, subscription.dead_letter_topic, entries_to_send, {"pubsubName": pubsub}
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # scopes, the outbound policy gave up, failed entries
            return False
        return True


def _event_metadata(message: BrokerMessage, offset: int) -> dict[str, str]:
    """consumer.go GetEventMetadata (escapeHeaders false): key, offset, topic, timestamp, partition,
    then one entry per Kafka header (the publish metadata, producer.go)."""
    metadata: dict[str, str] = {}
    if message.partition_key is not None:
        metadata["__key"] = message.partition_key
    metadata["__offset"] = str(offset)
    metadata["__topic"] = message.topic
    metadata["__timestamp"] = str(int(message.published_at.timestamp() * 1000))
    metadata["__partition"] = str(message.partition)
    for name, value in message.metadata.items():
        metadata[name] = str(value)
    return metadata


def _go_sorted(value: Any) -> Any:
    """Go's encoding/json writes map keys sorted; the entry structs keep their field order."""
    if isinstance(value, dict):
        if set(value) <= {"entryId", "event", "metadata", "contentType"} and "entryId" in value:
            return {
                "entryId": value["entryId"],
                "event": _go_sorted(value["event"]),
                "metadata": dict(sorted(value["metadata"].items())) if value["metadata"] is not None else None,
                **({"contentType": value["contentType"]} if value.get("contentType") else {}),
            }
        return {k: _go_sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_go_sorted(v) for v in value]
    return value


def _decode_app_bulk_response(content: bytes) -> list[tuple[str, str]]:
    """json.NewDecoder(body).Decode(&AppBulkResponse{}) (components-contrib pubsub/responses.go:
    `{"statuses": [{"entryId", "status"}]}`): the first JSON value only, names matched without
    case, `null` decodes to nothing; a wrong type is an error."""
    text = content.decode("utf-8", errors="replace").lstrip()
    if not text:
        raise ValueError("EOF")
    value, _ = json.JSONDecoder().raw_decode(text)
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ValueError("json: cannot unmarshal into Go value of type pubsub.AppBulkResponse")
    lowered = {str(k).lower(): v for k, v in value.items()}
    items = lowered.get("statuses")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError("json: cannot unmarshal into Go struct field AppBulkResponse.statuses")
    statuses: list[tuple[str, str]] = []
    for item in items:
        if item is None:
            statuses.append(("", ""))
            continue
        if not isinstance(item, dict):
            raise ValueError("json: cannot unmarshal into Go struct field AppBulkResponse.statuses")
        fields = {str(k).lower(): v for k, v in item.items()}
        entry_id, status = fields.get("entryid") or "", fields.get("status") or ""
        if not isinstance(entry_id, str) or not isinstance(status, str):
            raise ValueError("json: cannot unmarshal into Go struct field AppBulkResponseEntry of type string")
        statuses.append((entry_id, status))
    return statuses
