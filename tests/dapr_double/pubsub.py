"""Publishing: the `/v1.0/publish` route and the service that feeds the broker.

Reference: https://docs.dapr.io/reference/api/pubsub_api/ (204 on success, 404 for an
unknown pub/sub, 500 when the broker fails; `metadata.rawPayload`,
`metadata.partitionKey`, `metadata.ttlInSeconds`, `metadata.cloudevent.*` query
parameters; the Content-Type header becomes `datacontenttype`, default text/plain,
and `application/cloudevents+json` means "this body already is a CloudEvent").
Error codes follow dapr/dapr `pkg/api/errors/pubsub.go`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import cloudevents
from .apps import AppRegistry
from .broker import Broker, BrokerMessage
from .clock import Clock
from .core import query_metadata, sidecar_of
from .delivery import Deliverer, DeliverySettings
from .errors import DaprError
from .goformats import parse_bool


class PubSubService:
    """Appends messages to the broker, fans them out to subscribers, and keeps a journal."""

    def __init__(self, broker: Broker, apps: AppRegistry, clock: Clock, settings: DeliverySettings) -> None:
        self._broker = broker
        self._apps = apps
        self._clock = clock
        self.published: list[BrokerMessage] = []
        self.deliverer = Deliverer(broker, apps, clock, settings, dead_letter=self.dead_letter)

    async def append(
        self, pubsub: str, topic: str, data: bytes, metadata: Mapping[str, str], *, raw: bool
    ) -> BrokerMessage:
        message = await self._broker.append(
            pubsub=pubsub,
            topic=topic,
            data=data,
            metadata=metadata,
            raw=raw,
            subscribers=self._apps.subscribers(pubsub, topic),
            now=self._clock.now(),
            not_before=datetime.now(UTC),
        )
        self.published.append(message)
        self.deliverer.wake()
        return message

    async def dead_letter(self, message: BrokerMessage, topic: str) -> None:
        """Forward the original message bytes, unchanged, to the dead-letter topic."""
        await self.append(message.pubsub, topic, message.data, message.metadata, raw=message.raw)


def _publish_error(status: int, pubsub: str, topic: str, detail: str) -> DaprError:
    return DaprError(
        status,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"error when publishing to topic {topic} in pubsub {pubsub}: {detail}",
        reason="DAPR_PUBSUB_PUBLISH_MESSAGE",
    )


async def publish(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    pubsub, topic = request.path_params["pubsub"], request.path_params["topic"]
    if pubsub not in core.pubsubs:
        raise DaprError(404, "ERR_PUBSUB_NOT_FOUND", f"pubsub {pubsub} is not found", reason="DAPR_PUBSUB_NOT_FOUND")
    if not topic:
        raise DaprError(404, "ERR_TOPIC_NAME_EMPTY", f"topic is empty in pubsub {pubsub}")
    metadata = query_metadata(request)
    try:
        raw = parse_bool(metadata["rawPayload"]) if metadata.get("rawPayload") else False
    except ValueError as exc:
        raise DaprError(
            400,
            "ERR_PUBSUB_REQUEST_METADATA",
            f"failed deserializing metadata. Error: rawPayload value must be a valid boolean: "
            f"actual is '{metadata['rawPayload']}'",
            reason="DAPR_PUBSUB_METADATA_DESERIALIZATION",
        ) from exc
    body = await request.body()
    data = body
    if not raw:
        content_type = request.headers.get("content-type", "")
        traceparent = cloudevents.child_traceparent(request.headers.get("traceparent"))
        tracestate = request.headers.get("tracestate", "")
        now = core.clock.now()
        try:
            if cloudevents.is_content_type(content_type, cloudevents.CLOUD_EVENT_CONTENT_TYPE):
                envelope = cloudevents.from_cloud_event(
                    body, topic=topic, pubsub=pubsub, traceparent=traceparent, tracestate=tracestate, now=now
                )
            else:
                envelope = cloudevents.new_envelope(
                    source=app_id,
                    topic=topic,
                    pubsub=pubsub,
                    content_type=content_type,
                    data=body,
                    traceparent=traceparent,
                    tracestate=tracestate,
                    metadata=metadata,
                    now=now,
                )
        except ValueError as exc:
            raise DaprError(
                500,
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                "cannot create cloudevent",
                reason="DAPR_PUBSUB_CLOUD_EVENT_CREATION",
            ) from exc
        cloudevents.apply_ttl(envelope, metadata, now)
        data = cloudevents.encode(envelope)
    faults = core.faults
    if faults.failing_publishes > 0:
        # Injected broker failure: nothing is stored, the caller sees daprd's publish error.
        faults.failing_publishes -= 1
        raise _publish_error(faults.failing_publish_status, pubsub, topic, "injected broker failure")
    await core.pubsub.append(pubsub, topic, data, metadata, raw=raw)
    return Response(status_code=204)


ROUTES = [Route("/v1.0/publish/{pubsub}/{topic:path}", publish, methods=["POST", "PUT"])]
