"""Bulk publish: `POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}` (and `/v1.0/...` from 1.18).

Sources: dapr/dapr v1.16.19, v1.17.13, v1.18.3 (the handler only gained the TransportMode argument
and, at v1.18.3, the stable route); dapr/components-contrib v1.16.13, v1.17.8, v1.18.4.

**Routes** (`pkg/api/http/http.go` constructPubSubEndpoints): `publish/bulk/{pubsubname}/*` under
`v1.0-alpha1` at every tag, and also under `v1.0` at v1.18.3 (versions.py `stable_bulk_publish`).
Before 1.18 `/v1.0/publish/bulk/p/t` is the plain publish route with pubsub "bulk" (404).

**The handler** (`pkg/api/http/http.go` onBulkPublish), in this order:

1. pubsub / topic validation, then `metadata.rawPayload` (same errors as publish);
2. the body decodes into `[]bulkPublishMessageEntry{entryId, event, contentType, metadata}`; a body
   that does not is 400 ERR_PUBSUB_EVENTS_SER (reason DAPR_PUBSUB_UNMARSHAL_EVENTS). `[]` and `null`
   are valid: nothing is published and the answer is 204;
3. per entry: the event becomes bytes by its contentType (`pkg/api/http/util.go` ConvertEventToBytes:
   application/octet-stream: a base64 string; text/* and application/xml: a string; application/json
   and application/cloudevents+json: JSON-encoded; anything else, an empty contentType included:
   "mismatch between contentType and event") — else 400 ERR_PUBSUB_EVENTS_SER
   (DAPR_PUBSUB_MARSHAL_ENVELOPE); an entry with `metadata` gets the query metadata under it (entry
   keys win, `utils.PopulateMetadataForBulkPublishEntry`), one without keeps none; an empty or
   repeated entryId is 400 ERR_PUBSUB_EVENTS_SER (DAPR_PUBSUB_MARSHAL_EVENTS) "entryId is duplicated
   or not present for entry";
4. unless rawPayload, each entry becomes a CloudEvent built like a single publish's, from the
   entry's content type and *entry* metadata (so `cloudevent.*` overrides and `ttlInSeconds` apply
   only to entries that carry metadata), each with its own child span;
5. `publisher.BulkPublish` (`pkg/runtime/pubsub/publisher/publisher.go`): the publishing scopes
   (403 ERR_PUBSUB_FORBIDDEN), then the component's BulkPublish under the outbound policy with
   `ApplyBulkPublishResiliency` (`pkg/runtime/pubsub/bulkpublish_resiliency.go`): each retry sends
   only the entries that failed; if the policy ends on a timeout or an open breaker (or on an error
   without failed entries) every entry still pending is reported failed;
6. success: 204. Failure: the status of PublishMessage (500) with the body
   `{"failedEntries":[{"entryId","error"}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}` and the
   headers `metadata.responseData` (that body) and `metadata.error`.

**The Kafka component** (`common/component/kafka/producer.go` BulkPublish): the request metadata is
copied *over* every entry's metadata (`maps.Copy(entry.Metadata, metadata)`, so a query
`metadata.partitionKey` beats an entry's); `partitionKey`/`__key` is the message key and
`partitionNumber` the partition, as for Publish; an unparsable partitionNumber fails every entry;
`SendMessages` then stores each message on its own (no atomicity): the ones the producer rejects
(an out-of-range partition, or the double's injected faults) are the failed entries, and the call
fails with sarama's "kafka: Failed to deliver N messages.".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from . import cloudevents
from .broker import PARTITION_NUMBER_METADATA, Outgoing, PartitionError
from .core import query_metadata, sidecar_of
from .errors import DaprError
from .resiliency import BreakerOpen, BreakerTooManyRequests, DeadlineExceeded

if TYPE_CHECKING:
    from .pubsub import PubSubService

CONTENT_TYPE_MISMATCH = "error: mismatch between contentType and event"
ENTRY_ID_ERROR = "entryId is duplicated or not present for entry"


@dataclass
class BulkEntry:
    """contribpubsub.BulkMessageEntry (+ whether the bytes are a CloudEvent, for the journal)."""

    entry_id: str
    event: bytes
    content_type: str = ""
    metadata: dict[str, str] | None = None
    raw: bool = False


@dataclass
class BulkPublishFailed(Exception):
    """The component's BulkPublish (after the policy) failed: `failed` is [(entryId, error)]."""

    error: str
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.error


# -- the component and the resiliency wrapper -------------------------------------------------------


def _partition_number_error(metadata: Mapping[str, str]) -> str | None:
    """producer.go parsePartitionNumber: what fails the whole BulkPublish before sending."""
    value = metadata.get(PARTITION_NUMBER_METADATA)
    if value is None:
        return None
    try:
        number = int(value, 10)
    except ValueError:
        return f'invalid partitionNumber metadata value "{value}"'
    if number < 0:
        return f"partitionNumber must be non-negative, got {number}"
    return None


async def kafka_bulk_publish(
    service: PubSubService,
    pubsub: str,
    topic: str,
    entries: Sequence[BulkEntry],
    metadata: Mapping[str, str],
    *,
    inject_faults: bool,
) -> list[tuple[str, str]]:
    """producer.go BulkPublish: returns the failed entries ([] when all were stored)."""
    faults = service.faults
    if inject_faults and faults is not None and faults.failing_publishes > 0:
        faults.failing_publishes -= 1  # the whole call fails, as when the clients are gone
        error = "injected broker failure"
        raise BulkPublishFailed(error, [(e.entry_id, error) for e in entries])
    merged: list[dict[str, str]] = []
    for entry in entries:
        meta = dict(entry.metadata or {})
        meta.update(metadata)
        problem = _partition_number_error(meta)
        if problem is not None:
            raise BulkPublishFailed(problem, [(e.entry_id, problem) for e in entries])
        merged.append(meta)
    failed: list[tuple[str, str]] = []
    bulk_faults = service.bulk_faults
    sending: list[tuple[BulkEntry, Outgoing]] = []
    for entry, meta in zip(entries, merged, strict=True):
        if inject_faults and bulk_faults is not None and bulk_faults.take(entry.entry_id):
            failed.append((entry.entry_id, bulk_faults.error))
        else:
            sending.append((entry, Outgoing(entry.event, meta, entry.raw)))
    # SendMessages: one batch to the brokers; the partitioner's error fails its message alone.
    stored = await service.append_many(pubsub, topic, [o for _, o in sending]) if sending else []
    failed.extend((entry.entry_id, str(r)) for (entry, _), r in zip(sending, stored, strict=True) if isinstance(r, PartitionError))
    order = {entry.entry_id: n for n, entry in enumerate(entries)}
    failed.sort(key=lambda f: order[f[0]])
    if failed:
        raise BulkPublishFailed(f"kafka: Failed to deliver {len(failed)} messages.", failed)
    return []


async def bulk_publish(
    service: PubSubService,
    app_id: str,
    pubsub: str,
    topic: str,
    entries: Sequence[BulkEntry],
    metadata: Mapping[str, str],
    *,
    inject_faults: bool = False,
) -> None:
    """publisher.BulkPublish + ApplyBulkPublishResiliency. Raises PublishForbidden or BulkPublishFailed."""
    from .pubsub import PublishForbidden

    if not service.component(pubsub).may_publish(app_id, topic):
        raise PublishForbidden(topic, app_id)
    current = list(entries)

    async def operation() -> None:
        nonlocal current
        try:
            await kafka_bulk_publish(service, pubsub, topic, current, metadata, inject_faults=inject_faults)
        except BulkPublishFailed as exc:
            if exc.failed:  # the accumulator: the next attempt sends only the failed entries
                failed_ids = {entry_id for entry_id, _ in exc.failed}
                current = [e for e in current if e.entry_id in failed_ids]
            raise

    policy = service.outbound_policy(app_id, pubsub)
    try:
        if policy is None:
            await operation()
        else:
            await policy.run(operation)
    except BulkPublishFailed as exc:
        if not exc.failed:
            raise BulkPublishFailed(exc.error, [(e.entry_id, exc.error) for e in current]) from exc
        raise
    except (DeadlineExceeded, BreakerOpen, BreakerTooManyRequests) as exc:
        raise BulkPublishFailed(str(exc), [(e.entry_id, str(exc)) for e in current]) from exc


# -- the HTTP handler ------------------------------------------------------------------------------


def _events_error(status: int, message: str, reason: str, metadata: Mapping[str, str]) -> DaprError:
    return DaprError(status, "ERR_PUBSUB_EVENTS_SER", message, reason=reason, metadata=metadata)


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "number"


def _decode_entries(body: bytes) -> list[dict[str, Any]]:
    """json.NewDecoder(r.Body).Decode(&[]bulkPublishMessageEntry{}); raises ValueError(Go-like text)."""
    text = body.decode("utf-8", errors="replace").lstrip()
    if not text:
        raise ValueError("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid character looking for beginning of value ({exc.msg})") from exc
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(
            f"json: cannot unmarshal {_go_type(value)} into Go value of type []http.bulkPublishMessageEntry"
        )
    entries: list[dict[str, Any]] = []
    for item in value:
        if item is None:
            entries.append({"entryId": "", "event": None, "contentType": "", "metadata": None})
            continue
        if not isinstance(item, dict):
            raise ValueError(
                f"json: cannot unmarshal {_go_type(item)} into Go value of type http.bulkPublishMessageEntry"
            )
        fields = {str(k).lower(): v for k, v in item.items()}
        entry_id, content_type = fields.get("entryid"), fields.get("contenttype")
        for name, text_value in (("entryId", entry_id), ("contentType", content_type)):
            if text_value is not None and not isinstance(text_value, str):
                raise ValueError(
                    f"json: cannot unmarshal {_go_type(text_value)} into Go struct field "
                    f"bulkPublishMessageEntry.{name} of type string"
                )
        meta = fields.get("metadata")
        if meta is not None and (not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values())):
            raise ValueError(
                "json: cannot unmarshal into Go struct field bulkPublishMessageEntry.metadata of type map[string]string"
            )
        entries.append(
            {"entryId": entry_id or "", "event": fields.get("event"), "contentType": content_type or "",
             "metadata": meta}
        )  # fmt: skip
    return entries


def _is(content_type: str, expected: str) -> bool:
    return cloudevents.is_content_type(content_type, expected)


def convert_event_to_bytes(event: Any, content_type: str) -> bytes:
    """pkg/api/http/util.go ConvertEventToBytes; raises ValueError with daprd's text."""
    if _is(content_type, "application/octet-stream"):
        if not isinstance(event, str):
            raise ValueError(CONTENT_TYPE_MISMATCH)
        try:
            return base64.b64decode(event, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                f"error: unable to decode base64 application/octect-stream data: illegal base64 data ({exc})"
            ) from exc
    if content_type.lower().startswith("text/") or _is(content_type, "application/xml"):
        if not isinstance(event, str):
            raise ValueError(CONTENT_TYPE_MISMATCH)
        return event.encode("utf-8")
    if _is(content_type, "application/json") or _is(content_type, cloudevents.CLOUD_EVENT_CONTENT_TYPE):
        return _go_json(event).encode("utf-8")
    raise ValueError(CONTENT_TYPE_MISMATCH)


def _go_json(value: Any) -> str:
    """json.Marshal of a decoded `any`: maps sorted, compact, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def bulk_publish_route(request: Request) -> Response:
    from .pubsub import PublishForbidden, raw_payload, validate_publish_target

    core, app_id = sidecar_of(request)
    pubsub, topic = request.path_params["pubsub"], request.path_params["topic"]
    validate_publish_target(core, app_id, pubsub, topic)
    metadata = query_metadata(request)
    raw = raw_payload(metadata)
    try:
        incoming = _decode_entries(await request.body())
    except ValueError as exc:
        raise _events_error(
            400, f"error when unmarshaling the request for topic {topic} pubsub {pubsub}: {exc}",
            "DAPR_PUBSUB_UNMARSHAL_EVENTS", {"appID": app_id},
        ) from exc  # fmt: skip
    entries: list[BulkEntry] = []
    seen: set[str] = set()
    for item in incoming:
        try:
            data = convert_event_to_bytes(item["event"], item["contentType"])
        except ValueError as exc:
            raise _events_error(
                400, f"error when marshalling cloud event envelope for topic {topic} pubsub {pubsub}: {exc}",
                "DAPR_PUBSUB_MARSHAL_ENVELOPE", {"appID": app_id, "error": str(exc)},
            ) from exc  # fmt: skip
        entry_meta: dict[str, str] | None = None
        if item["metadata"] is not None:
            entry_meta = {**metadata, **item["metadata"]}
        entry_id = item["entryId"]
        if not entry_id or entry_id in seen:
            raise _events_error(
                400, f"error marshaling events to bytes for topic {topic} pubsub {pubsub}. error: {ENTRY_ID_ERROR}",
                "DAPR_PUBSUB_MARSHAL_EVENTS", {"appID": app_id, "error": ENTRY_ID_ERROR},
            )  # fmt: skip
        seen.add(entry_id)
        entries.append(BulkEntry(entry_id, data, item["contentType"], entry_meta, raw=raw))
    if not raw:
        now = core.clock.now()
        parent = request.headers.get("traceparent")
        tracestate = request.headers.get("tracestate", "")
        for entry in entries:
            traceparent = cloudevents.child_traceparent(parent)  # a producer span per entry
            try:
                if _is(entry.content_type, cloudevents.CLOUD_EVENT_CONTENT_TYPE):
                    envelope = cloudevents.from_cloud_event(
                        entry.event, topic=topic, pubsub=pubsub, traceparent=traceparent, tracestate=tracestate,
                        now=now,
                    )  # fmt: skip
                else:
                    envelope = cloudevents.new_envelope(
                        source=app_id, topic=topic, pubsub=pubsub, content_type=entry.content_type,
                        data=entry.event, traceparent=traceparent, tracestate=tracestate,
                        metadata=entry.metadata or {}, now=now,
                    )  # fmt: skip
            except ValueError as exc:
                raise DaprError(
                    500, "ERR_PUBSUB_CLOUD_EVENTS_SER", "cannot create cloudevent",
                    reason="DAPR_PUBSUB_CLOUD_EVENT_CREATION", metadata={"appID": app_id, "error": str(exc)},
                ) from exc  # fmt: skip
            cloudevents.apply_ttl(envelope, entry.metadata or {}, now)
            entry.event = cloudevents.encode(envelope)
    try:
        await core.pubsub.bulk_publish(app_id, pubsub, topic, entries, metadata, inject_faults=True)
    except PublishForbidden as exc:
        raise DaprError(
            403, "ERR_PUBSUB_FORBIDDEN", str(exc), reason="DAPR_PUBSUB_FORBIDDEN",
            metadata={"topic": topic, "error": str(exc)},
        ) from exc  # fmt: skip
    except BulkPublishFailed as exc:
        body = json.dumps(
            {
                "failedEntries": [{"entryId": i, **({"error": e} if e else {})} for i, e in exc.failed],
                "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
            },
            separators=(",", ":"),
        )
        message = f"error when publishing to topic {topic} in pubsub {pubsub}: {exc.error}"
        return Response(
            body,
            status_code=500,
            media_type="application/json",
            headers={"metadata.responseData": body, "metadata.error": message},
        )
    return Response(status_code=204)
