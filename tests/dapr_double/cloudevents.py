"""CloudEvents 1.0 envelopes, built the way daprd builds them.

Docs: https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-cloudevents/
and the publish API reference https://docs.dapr.io/reference/api/pubsub_api/ . Field
defaults and override rules follow dapr/components-contrib `pubsub/envelope.go` and
dapr/dapr `pkg/runtime/pubsub/cloudevents.go`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

CLOUD_EVENT_CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_TYPE = "com.dapr.event.sent"
DEFAULT_SOURCE = "Dapr"
DEFAULT_DATA_CONTENT_TYPE = "text/plain"
SPEC_VERSION = "1.0"

# Publish metadata that overrides envelope attributes ("metadata.cloudevent.type=..."),
# matched case-insensitively like daprd's mapstructure decoding.
_OVERRIDABLE = ("id", "source", "type", "subject", "traceid", "traceparent", "tracestate")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def is_content_type(content_type: str, expected: str) -> bool:
    """Media-type comparison that ignores case and parameters such as `; charset=utf-8`."""
    return content_type.lower().split(";", 1)[0].strip() == expected


def format_time(moment: datetime) -> str:
    """RFC 3339 with second precision, as Go's time.RFC3339 prints it."""
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def child_traceparent(incoming: str | None) -> str:
    """W3C traceparent for the span daprd opens for this call.

    daprd continues an incoming trace (same trace id, new span id) or starts a new
    one: https://docs.dapr.io/operations/observability/tracing/w3c-tracing-overview/
    """
    match = _TRACEPARENT.match((incoming or "").strip().lower())
    if match and match.group(2) != "0" * 32:
        return f"00-{match.group(2)}-{secrets.token_hex(8)}-{match.group(4)}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _decode_data(content_type: str, data: bytes) -> tuple[str, Any]:
    if is_content_type(content_type, "application/json"):
        try:
            return "data", json.loads(data)
        except ValueError:
            return "data", data.decode("utf-8", errors="replace")
    if is_content_type(content_type, "application/octet-stream") or is_content_type(
        content_type, "application/cloudevents+protobuf"
    ):
        return "data_base64", base64.b64encode(data).decode("ascii")
    return "data", data.decode("utf-8", errors="replace")


def new_envelope(
    *,
    source: str,
    topic: str,
    pubsub: str,
    content_type: str,
    data: bytes,
    traceparent: str,
    tracestate: str,
    metadata: Mapping[str, str],
    now: datetime,
) -> dict[str, Any]:
    """Wrap a non-CloudEvent payload (NewCloudEvent + NewCloudEventsEnvelope)."""
    lowered = {k.lower(): v for k, v in metadata.items()}
    override = {name: lowered.get(f"cloudevent.{name}", "") for name in _OVERRIDABLE}
    trace = override["traceparent"] or override["traceid"] or traceparent
    data_content_type = content_type or DEFAULT_DATA_CONTENT_TYPE
    data_field, data_value = _decode_data(data_content_type, data)
    envelope: dict[str, Any] = {
        "id": override["id"] or str(uuid.uuid4()),
        "specversion": SPEC_VERSION,
        "datacontenttype": data_content_type,
        "source": override["source"] or source or DEFAULT_SOURCE,
        "type": override["type"] or DEFAULT_TYPE,
        "topic": topic,
        "pubsubname": pubsub,
        # daprd still sets the legacy `traceid` next to `traceparent`, with the same value.
        "traceid": trace,
        "traceparent": trace,
        "tracestate": override["tracestate"] or tracestate,
        "time": format_time(now),
        data_field: data_value,
    }
    if override["subject"]:
        envelope["subject"] = override["subject"]
    return envelope


def from_cloud_event(
    body: bytes, *, topic: str, pubsub: str, traceparent: str, tracestate: str, now: datetime
) -> dict[str, Any]:
    """Complete a caller-supplied CloudEvent (Content-Type application/cloudevents+json).

    As in FromCloudEvent: topic and pubsubname are always set; time, trace fields,
    source, type and specversion only when missing. No id is invented, and the
    `metadata.cloudevent.*` overrides do not apply to a caller-supplied envelope.
    """
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("a CloudEvent must be a JSON object")
    event.setdefault("time", format_time(now))
    if "traceid" not in event:
        event["traceid"] = traceparent
        event["traceparent"] = traceparent
    event.setdefault("tracestate", tracestate)
    event["topic"] = topic
    event["pubsubname"] = pubsub
    for field, default in (("source", DEFAULT_SOURCE), ("type", DEFAULT_TYPE), ("specversion", SPEC_VERSION)):
        if event.get(field) is None:
            event[field] = default
    return event


def from_raw_payload(data: bytes, *, topic: str, pubsub: str) -> dict[str, Any]:
    """Envelope daprd builds on the subscriber side for a `rawPayload` subscription.

    Docs: https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-raw/
    (the id is random on every delivery and the data always arrives as data_base64).
    """
    return {
        "id": str(uuid.uuid4()),
        "specversion": SPEC_VERSION,
        "datacontenttype": "application/octet-stream",
        "source": DEFAULT_SOURCE,
        "type": DEFAULT_TYPE,
        "topic": topic,
        "pubsubname": pubsub,
        "data_base64": base64.b64encode(data).decode("ascii"),
    }


def apply_ttl(envelope: dict[str, Any], metadata: Mapping[str, str], now: datetime) -> None:
    """`metadata.ttlInSeconds` becomes an `expiration` attribute when the broker has no native TTL.

    Docs: https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-message-ttl/
    """
    try:
        seconds = int(metadata.get("ttlInSeconds", ""))
    except ValueError:
        return  # daprd ignores a TTL it cannot parse here
    if seconds >= 0:
        envelope["expiration"] = format_time((now + timedelta(seconds=seconds)).astimezone(UTC))


def has_expired(envelope: Mapping[str, Any], now: datetime) -> bool:
    expiration = envelope.get("expiration")
    if not isinstance(expiration, str) or not expiration:
        return False
    try:
        moment = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment.astimezone(UTC) < now.astimezone(UTC)


def encode(envelope: Mapping[str, Any]) -> bytes:
    """Serialise with sorted keys, as Go's encoding/json does for maps."""
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
