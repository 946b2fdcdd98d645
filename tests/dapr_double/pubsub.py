"""Publishing: the `/v1.0/publish` route and the service that feeds the broker.

Reference: https://docs.dapr.io/reference/api/pubsub_api/ (204 on success, 404 for an
unknown pub/sub, 500 when the broker fails; `metadata.rawPayload`,
`metadata.partitionKey`, `metadata.ttlInSeconds`, `metadata.cloudevent.*` query
parameters; the Content-Type header becomes `datacontenttype`, default text/plain,
and `application/cloudevents+json` means "this body already is a CloudEvent").
Error codes follow dapr/dapr `pkg/api/errors/pubsub.go`.

The service also knows the pub/sub topology of the double's sidecars (dapr/dapr v1.16.19,
v1.17.13, v1.18.3):

- which pub/sub components a sidecar has: the Components of `DoubleCore.manifests` loaded by
  the app id (their `scopes`), else the double's `pubsubs`;
- topic scopes (`allowedTopics`, `protectedTopics`, `publishingScopes`, `subscriptionScopes`,
  `pkg/scopes/scopes.go`, `pkg/runtime/pubsub/adapter.go` IsOperationAllowed): a publish to a
  topic the app may not publish to is refused by `pkg/runtime/pubsub/publisher/publisher.go`
  with NotAllowedError, which `pkg/api/http/http.go` onPublish turns into 403
  ERR_PUBSUB_FORBIDDEN "topic X is not allowed for app id Y"; a subscription to a topic the
  app may not subscribe to fails in `pkg/runtime/subscription/subscription.go` New, so it is
  never started (the subscriber only logs and retries it, `pkg/runtime/processor/subscriber`);
- the outbound Resiliency policy: `publisher.Publish` runs the component's Publish under
  `ComponentOutboundPolicy(pubsub)`, after the scope check. The dead-letter publish of a
  subscriber's sidecar goes through the same `Publish` (subscription.go sendToDeadLetter calls
  the adapter), so it is scoped and retried as the subscriber app;
- consumer groups and partitions (see broker.py);
- bulk publish (`/v1.0-alpha1/publish/bulk/...`, `/v1.0/...` from 1.18): bulk_publish.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import cloudevents
from .apps import AppChannel, AppRegistry
from .broker import (
    Broker,
    BrokerMessage,
    KafkaComponent,
    Outgoing,
    PartitionError,
    PendingDelivery,
    Subscriber,
    range_assignment,
)
from .bulk_publish import BulkEntry, bulk_publish, bulk_publish_route
from .clock import Clock
from .core import query_metadata, sidecar_of
from .delivery import Deliverer, DeliverySettings
from .errors import DaprError
from .goformats import parse_bool
from .subscriptions import Subscription
from .versions import DaprVersion

if TYPE_CHECKING:
    from .core import DoubleCore

T = TypeVar("T")


class InboundPolicy(Protocol):
    """The part of resiliency.Policy the pub/sub half uses."""

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T: ...


class PublishForbidden(Exception):
    """pkg/runtime/pubsub NotAllowedError."""

    def __init__(self, topic: str, app_id: str) -> None:
        super().__init__(f"topic {topic} is not allowed for app id {app_id}")
        self.topic = topic
        self.app_id = app_id


class PubSubService:
    """Appends messages to the broker, fans them out to consumer groups, and keeps a journal."""

    def __init__(self, broker: Broker, apps: AppRegistry, clock: Clock, settings: DeliverySettings) -> None:
        self._broker = broker
        self._apps = apps
        self._clock = clock
        self._core: DoubleCore | None = None
        self._uuids: dict[str, str] = {}
        self.published: list[BrokerMessage] = []
        self.deliverer = Deliverer(broker, self, clock, settings)

    def attach(self, core: DoubleCore) -> None:
        """Give the service the shared core (manifests, resiliency, namespace, pub/sub names)."""
        self._core = core

    # -- topology ------------------------------------------------------------------

    @property
    def _manifests(self) -> Any:
        return getattr(self._core, "manifests", None)

    def component(self, pubsub: str) -> KafkaComponent:
        manifests = self._manifests
        if manifests is not None:
            try:
                found = manifests.component(pubsub)
            except KeyError:
                found = None
            if found is not None:
                return KafkaComponent(pubsub, dict(found.metadata))
        return KafkaComponent(pubsub)

    def has_pubsub(self, app_id: str, pubsub: str) -> bool:
        """Whether `app_id`'s sidecar loaded pub/sub component `pubsub`."""
        manifests = self._manifests
        if manifests is not None:
            return any(c.name == pubsub for c in manifests.components_for(app_id, "pubsub"))
        return self._core is None or pubsub in self._core.pubsubs

    @property
    def namespace(self) -> str:
        """NAMESPACE of the sidecars (the `{namespace}` tag resolves to "<namespace>.<app id>")."""
        if self._core is None:
            return ""
        manifests = self._manifests
        return self._core.namespace or (manifests.namespace if manifests is not None else "")

    def subscription(self, channel: AppChannel, pubsub: str, topic: str) -> Subscription | None:
        """The app's subscription to the topic, if daprd would have started it."""
        sub = channel.subscription_for(pubsub, topic)
        if sub is None or not self.has_pubsub(channel.app_id, pubsub):
            return None
        if not self.component(pubsub).may_subscribe(channel.app_id, topic):
            return None
        return sub

    def group_of(self, channel: AppChannel, pubsub: str) -> str:
        return self.component(pubsub).consumer_group(
            app_id=channel.app_id, pod=channel.pod, namespace=self.namespace, uuids=self._uuids
        )

    def members(self, pubsub: str, topic: str, group: str) -> list[AppChannel]:
        """The pods of consumer group `group` subscribed to the topic, in a stable member order."""
        found = [
            c
            for c in self._apps.all()
            if self.subscription(c, pubsub, topic) is not None and self.group_of(c, pubsub) == group
        ]
        return sorted(found, key=lambda c: (c.app_id, c.pod))

    def subscribers(self, pubsub: str, topic: str) -> list[Subscriber]:
        """One entry per consumer group with a member subscribed to the topic."""
        groups: dict[str, str] = {}
        for channel in self._apps.all():
            if self.subscription(channel, pubsub, topic) is not None:
                groups.setdefault(self.group_of(channel, pubsub), channel.app_id)
        return [Subscriber(group, app_id) for group, app_id in groups.items()]

    def owner(self, delivery: PendingDelivery) -> AppChannel | None:
        """The group member the message's partition is assigned to (sarama range strategy)."""
        message = delivery.message
        members = self.members(message.pubsub, message.topic, delivery.group)
        by_name = {f"{c.app_id}/{c.pod}": c for c in members}
        owners = range_assignment(self._broker.partitions, list(by_name))
        name = owners.get(message.partition)
        return by_name.get(name) if name is not None else None

    def inbound_policy(self, app_id: str, pubsub: str) -> InboundPolicy | None:
        resiliency = getattr(self._core, "resiliency", None)
        return resiliency.component_inbound(app_id, pubsub) if resiliency is not None else None

    def models_kafka(self, inbound: InboundPolicy | None) -> bool:
        """Retry like daprd + the Kafka component (else: the double's simple keyword policy).

        The simple policy (max_delivery_attempts x redelivery_backoff) stays for callers that
        give the double neither manifests nor an inbound Resiliency policy.
        """
        return self._manifests is not None or inbound is not None

    # -- publishing ----------------------------------------------------------------

    async def append(
        self, pubsub: str, topic: str, data: bytes, metadata: Mapping[str, str], *, raw: bool
    ) -> BrokerMessage:
        """The component's Publish: store the message for every consumer group of the topic.
        Raises PartitionError when the producer would refuse the message."""
        (stored,) = await self.append_many(pubsub, topic, [Outgoing(data, metadata, raw)])
        if isinstance(stored, PartitionError):
            raise stored
        return stored

    async def append_many(
        self, pubsub: str, topic: str, messages: Sequence[Outgoing]
    ) -> list[BrokerMessage | PartitionError]:
        """The component's BulkPublish: the messages the partitioner accepts, stored together."""
        stored = await self._broker.append_many(
            pubsub=pubsub,
            topic=topic,
            messages=messages,
            subscribers=self.subscribers(pubsub, topic),
            now=self._clock.now(),
            not_before=datetime.now(UTC),
        )
        self.published.extend(m for m in stored if isinstance(m, BrokerMessage))
        self.deliverer.wake()
        return stored

    async def publish(
        self,
        app_id: str,
        pubsub: str,
        topic: str,
        data: bytes,
        metadata: Mapping[str, str],
        *,
        raw: bool,
        inject_faults: bool = False,
    ) -> BrokerMessage:
        """publisher.Publish: scope check, then the component's Publish under the outbound policy.

        Raises PublishForbidden, or the last error of the policy.
        """
        if not self.component(pubsub).may_publish(app_id, topic):
            raise PublishForbidden(topic, app_id)

        async def operation() -> BrokerMessage:
            faults = self._core.faults if self._core is not None else None
            if inject_faults and faults is not None and faults.failing_publishes > 0:
                # Injected broker failure: nothing is stored, the caller sees daprd's publish error.
                faults.failing_publishes -= 1
                raise _publish_error(faults.failing_publish_status, pubsub, topic, "injected broker failure")
            return await self.append(pubsub, topic, data, metadata, raw=raw)

        if self._core is None:
            return await operation()
        return await self._core.outbound(app_id, pubsub, operation)

    @property
    def faults(self) -> Any:
        return self._core.faults if self._core is not None else None

    @property
    def bulk_faults(self) -> Any:
        return self._core.faults.bulk if self._core is not None else None

    @property
    def version_tag(self) -> str:
        return self._core.version.tag if self._core is not None else ""

    def outbound_policy(self, app_id: str, pubsub: str) -> Any:
        resiliency = getattr(self._core, "resiliency", None)
        return resiliency.component_outbound(app_id, pubsub) if resiliency is not None else None

    async def bulk_publish(
        self,
        app_id: str,
        pubsub: str,
        topic: str,
        entries: Sequence[BulkEntry],
        metadata: Mapping[str, str],
        *,
        inject_faults: bool = False,
    ) -> None:
        """publisher.BulkPublish (bulk_publish.py): raises PublishForbidden or BulkPublishFailed."""
        await bulk_publish(self, app_id, pubsub, topic, entries, metadata, inject_faults=inject_faults)

    async def dead_letter(self, message: BrokerMessage, topic: str, app_id: str) -> None:
        """subscription.go sendToDeadLetter: the original bytes and metadata, published as the subscriber."""
        await self.publish(app_id, message.pubsub, topic, message.data, message.metadata, raw=message.raw)


def _publish_error(status: int, pubsub: str, topic: str, detail: str) -> DaprError:
    return DaprError(
        status,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"error when publishing to topic {topic} in pubsub {pubsub}: {detail}",
        reason="DAPR_PUBSUB_PUBLISH_MESSAGE",
    )


def validate_publish_target(core: DoubleCore, app_id: str, pubsub: str, topic: str) -> None:
    """http.go validateAndGetPubsubAndTopic (publish and bulk publish)."""
    if not core.pubsub.has_pubsub(app_id, pubsub):
        raise DaprError(404, "ERR_PUBSUB_NOT_FOUND", f"pubsub {pubsub} is not found", reason="DAPR_PUBSUB_NOT_FOUND")
    if not topic:
        raise DaprError(404, "ERR_TOPIC_NAME_EMPTY", f"topic is empty in pubsub {pubsub}")


def raw_payload(metadata: Mapping[str, str]) -> bool:
    """The `rawPayload` publish metadata, or daprd's 400 for a value Go cannot parse as a bool."""
    try:
        return parse_bool(metadata["rawPayload"]) if metadata.get("rawPayload") else False
    except ValueError as exc:
        raise DaprError(
            400,
            "ERR_PUBSUB_REQUEST_METADATA",
            f"failed deserializing metadata. Error: rawPayload value must be a valid boolean: "
            f"actual is '{metadata['rawPayload']}'",
            reason="DAPR_PUBSUB_METADATA_DESERIALIZATION",
        ) from exc


async def publish(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    pubsub, topic = request.path_params["pubsub"], request.path_params["topic"]
    validate_publish_target(core, app_id, pubsub, topic)
    metadata = query_metadata(request)
    raw = raw_payload(metadata)
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
    try:
        await core.pubsub.publish(app_id, pubsub, topic, data, metadata, raw=raw, inject_faults=True)
    except PublishForbidden as exc:
        # pkg/api/errors/pubsub.go PublishForbidden (errorcodes.PubsubForbidden).
        raise DaprError(
            403,
            "ERR_PUBSUB_FORBIDDEN",
            str(exc),
            reason="DAPR_PUBSUB_FORBIDDEN",
            metadata={"topic": topic, "error": str(exc)},
        ) from exc
    except PartitionError as exc:
        raise _publish_error(500, pubsub, topic, str(exc)) from exc
    except DaprError:
        raise
    except Exception as exc:  # the broker (PostgreSQL) failed, or the outbound policy gave up
        raise _publish_error(500, pubsub, topic, str(exc) or type(exc).__name__) from exc
    return Response(status_code=204)


ROUTES = [Route("/v1.0/publish/{pubsub}/{topic:path}", publish, methods=["POST", "PUT"])]


def routes(version: DaprVersion) -> list[Route]:
    """Publish and bulk publish routes at one daprd tag (pkg/api/http/http.go constructPubSubEndpoints).

    The stable bulk route (v1.18.3) comes first: chi prefers the static `bulk` segment to the
    `{pubsubname}` parameter. Without it `/v1.0/publish/bulk/...` is a publish to pubsub "bulk".
    """
    bulk_versions = ("v1.0-alpha1", "v1.0") if version.stable_bulk_publish else ("v1.0-alpha1",)
    bulk = [
        Route(f"/{v}/publish/bulk/{{pubsub}}/{{topic:path}}", bulk_publish_route, methods=["POST", "PUT"])
        for v in bulk_versions
    ]
    return [*bulk, *ROUTES]
