"""`DaprDouble`: a test stand-in for daprd (and the Dapr control plane) over real PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx2
from starlette.types import ASGIApp

from .apps import AppChannel, AppRegistry
from .broker import Broker, BrokerMessage
from .clock import Clock, ManualClock, SystemClock
from .core import DoubleCore, SecretStores, SidecarFaults
from .delivery import DeliveryAttempt, DeliverySettings, FaultBudget
from .jobs import Job, JobService, JobTrigger
from .manifests import Manifests
from .pubsub import PubSubService
from .resiliency import Resiliency, Timer
from .server import SidecarServer
from .sidecar import API_TOKEN_HEADER, build_sidecar
from .state import KEY_PREFIX_STRATEGIES, StateRepository
from .store_pg import PgStore
from .versions import DEFAULT_VERSION, DaprVersion


class DaprDouble:
    """A Dapr sidecar double: the Dapr HTTP API v1.0 subset Doable uses, for tests only.

    Several app ids can share one double, like several sidecars sharing one state
    store, one broker and one scheduler: `sidecar_app(app_id)` is the sidecar ASGI
    app of one app id, `serve(app_id=...)` puts it on a real port. Use it as
    `async with DaprDouble(...) as double:` (or `start()` / `close()`).
    """

    def __init__(
        self,
        *,
        app_id: str,
        dsn: str,
        schema: str,
        app: ASGIApp | None = None,
        app_base_url: str | None = None,
        secrets: SecretStores | None = None,
        api_token: str | None = None,
        app_token: str | None = None,
        clock: Clock | None = None,
        state_stores: Sequence[str] = ("statestore",),
        key_prefix: str = "appid",
        pubsubs: Sequence[str] = ("pubsub", "live-pubsub"),  # the components doable.platform.topology names
        namespace: str = "",
        max_delivery_attempts: int = 5,
        redelivery_backoff: float = 0.05,
        topic_partitions: int = 3,
        job_retry_interval: float = 1.0,
        auto_tick: bool | None = None,
        scheduler_poll_interval: float = 0.05,
        app_timeout: float = 10.0,
        subscribe_on_start: bool = True,
        drop_schema_on_close: bool = True,
        dapr_version: str = DEFAULT_VERSION,
        manifests: Manifests | None = None,
        config_name: str | None = None,
        resiliency_timer: Timer | None = None,
    ) -> None:
        """Configure the double; nothing connects until `start()`.

        app / app_base_url: how to reach the primary app (`app_id`) for deliveries,
            job triggers and invocations: an in-process ASGI app or a real URL (or neither
            for a sidecar whose app receives nothing).
        schema: PostgreSQL schema holding this double's tables (unique per test).
        key_prefix: the state stores' keyPrefix strategy: "appid" (Dapr's default),
            "none" (keys shared by all app ids) or "name" (prefixed with the store name).
        max_delivery_attempts / redelivery_backoff: pub/sub retry policy (constant backoff, seconds)
            when the double has no manifests and no inbound Resiliency policy (see delivery.py).
        topic_partitions: partitions of every topic (the chart's redpanda.topics.partitions).
        job_retry_interval: interval of the default job failure policy (Dapr: 1 s).
        auto_tick: run the job scheduler in the background; defaults to True unless
            `clock` is a ManualClock, in which case tests call `await double.tick()`.
        dapr_version: the daprd release line to impersonate, "1.16", "1.17" or "1.18" (see
            versions.py: the Jobs API path, `/v1.0/metadata`).
        manifests: the Dapr resources of the deployment (`manifests.render_chart()`, or
            `Manifests.from_yaml`). Each sidecar then loads only the Components scoped to its app
            id (state keyPrefix from the component's metadata, secret stores, pub/sub), uses the
            Configuration (`config_name`, default: the only one) for secret scopes and access
            control, and the Resiliency CRs in its scope; `state_stores`, `key_prefix` and
            `pubsubs` are then ignored, and `secrets` only supplies the data of loaded stores.
            Without manifests: no Configuration, no Resiliency CRs (daprd's built-in policies only).
        resiliency_timer: time for retry waits and circuit-breaker periods (resiliency.py):
            `SystemTimer(scale)` shrinks them, `VirtualTimer()` makes them instantaneous.
        subscribe_on_start: read the primary app's `/dapr/subscribe` in `start()`; set it
            False when the app behind `app_base_url` starts after the double, then call
            `await double.refresh_subscriptions()` once it is up.
        """
        if key_prefix not in KEY_PREFIX_STRATEGIES:
            raise ValueError(f"key_prefix must be one of {KEY_PREFIX_STRATEGIES}")
        self.app_id = app_id
        self.clock: Clock = clock or SystemClock()
        self._app_token = app_token
        self._app_timeout = app_timeout
        self._primary_app = (app, app_base_url)
        self._subscribe_on_start = subscribe_on_start
        self._drop_schema = drop_schema_on_close
        self._pg = PgStore(dsn, schema)
        self._apps = AppRegistry()
        self._servers: list[SidecarServer] = []
        self._clients: list[httpx2.AsyncClient] = []
        self._sidecars: dict[str, ASGIApp] = {}
        self._broker = Broker(self._pg, partitions=topic_partitions)
        self._pubsub = PubSubService(
            self._broker,
            self._apps,
            self.clock,
            DeliverySettings(max_attempts=max_delivery_attempts, backoff=redelivery_backoff),
        )
        self._jobs = JobService(
            self._pg,
            self._apps,
            self.clock,
            default_retry_interval=timedelta(seconds=job_retry_interval),
            poll_interval=scheduler_poll_interval,
            auto_tick=not isinstance(self.clock, ManualClock) if auto_tick is None else auto_tick,
        )
        self.version = DaprVersion(dapr_version)
        self.manifests = manifests
        resiliency = (
            Resiliency.from_manifests(manifests, resiliency_timer)
            if manifests is not None
            else Resiliency.none(resiliency_timer)
        )
        if manifests is not None and (config_name is not None or manifests.configurations):
            # Fail now, as daprd fails to start, on a missing or invalid Configuration.
            _ = manifests.configuration_named(config_name) if config_name else manifests.configuration
        self._core = DoubleCore(
            clock=self.clock,
            pg=self._pg,
            apps=self._apps,
            state=StateRepository(self._pg),
            state_stores={name: key_prefix for name in state_stores},
            pubsubs=frozenset(pubsubs),
            secret_stores=secrets or {},
            api_token=api_token,
            namespace=namespace,
            pubsub=self._pubsub,
            jobs=self._jobs,
            faults=SidecarFaults(),
            version=self.version,
            manifests=manifests,
            resiliency=resiliency,
            config_name=config_name,
        )
        self._pubsub.attach(self._core)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Create the schema and tables, register the primary app, start delivery and scheduling."""
        await self._pg.open()
        try:
            asgi_app, base_url = self._primary_app
            if asgi_app is not None or base_url is not None:
                await self.register_app(
                    self.app_id, asgi_app=asgi_app, base_url=base_url, load_subscriptions=self._subscribe_on_start
                )
        except BaseException:
            await self.close()
            raise
        self._pubsub.deliverer.start()
        self._jobs.start()

    async def close(self) -> None:
        """Stop loops and servers, close clients, and drop the schema (unless told not to)."""
        await self._pubsub.deliverer.stop()
        await self._jobs.stop()
        for server in self._servers:
            await server.stop()
        self._servers.clear()
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
        await self._core.resiliency.drain()
        await self._apps.aclose()
        await self._pg.close(drop=self._drop_schema)

    async def __aenter__(self) -> DaprDouble:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- apps and sidecars ---------------------------------------------------------

    async def register_app(
        self,
        app_id: str,
        *,
        asgi_app: ASGIApp | None = None,
        base_url: str | None = None,
        load_subscriptions: bool = True,
        app_token: str | None = None,
        pod: str | None = None,
    ) -> None:
        """Make `app_id` reachable (in-process ASGI app or real URL) and read its `/dapr/subscribe`.

        `pod` names one replica of the app id (default "<app_id>-0"): register several pods
        of one app id to have them share its consumer groups, or get a group each with a
        `{podName}` consumerGroup/consumerID (see pubsub.py).

        Pass load_subscriptions=False for an app that is not up yet, then call
        `refresh_subscriptions(app_id)` once it is. `app_token` overrides the double's
        app token for this app (each real sidecar has its own APP_API_TOKEN).
        """
        channel = AppChannel(
            app_id,
            asgi_app=asgi_app,
            base_url=base_url,
            app_token=app_token or self._app_token,
            timeout=self._app_timeout,
            pod=pod,
        )
        self._apps.add(channel)
        if load_subscriptions:
            await channel.load_subscriptions()

    async def refresh_subscriptions(self, app_id: str | None = None) -> None:
        """Re-read an app's `GET /dapr/subscribe` (daprd reads it when the app comes up)."""
        app_id = app_id or self.app_id
        channels = self._apps.pods(app_id)
        if not channels:
            raise KeyError(f"app {app_id!r} is not registered")
        for channel in channels:
            await channel.load_subscriptions()

    def sidecar_app(self, app_id: str | None = None) -> ASGIApp:
        """The sidecar ASGI app answering the Dapr API for `app_id` (default: the primary app)."""
        app_id = app_id or self.app_id
        if app_id not in self._sidecars:
            self._sidecars[app_id] = build_sidecar(self._core, app_id)
        return self._sidecars[app_id]

    @property
    def asgi(self) -> ASGIApp:
        """The primary app's sidecar ASGI app."""
        return self.sidecar_app(self.app_id)

    def client(self, app_id: str | None = None, *, api_token: str | None = None) -> httpx2.AsyncClient:
        """An in-process httpx2 client for one sidecar (base URL http://127.0.0.1:3500).

        Sends `dapr-api-token` when the double requires one (override with api_token).
        Closed by `close()`.
        """
        token = api_token if api_token is not None else self._core.api_token
        headers = {API_TOKEN_HEADER.decode(): token} if token else {}
        client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=self.sidecar_app(app_id)),
            base_url="http://127.0.0.1:3500",
            headers=headers,
        )
        self._clients.append(client)
        return client

    @contextlib.asynccontextmanager
    async def serve(self, port: int = 0, *, app_id: str | None = None) -> AsyncIterator[str]:
        """Serve one sidecar on 127.0.0.1 (port 0 picks a free port) and yield its base URL."""
        server = SidecarServer(self.sidecar_app(app_id), port)
        await server.start()
        self._servers.append(server)
        try:
            yield server.url
        finally:
            await server.stop()
            if server in self._servers:
                self._servers.remove(server)

    # -- fault switches --------------------------------------------------------------

    def set_down(self, down: bool = True) -> None:
        """Every sidecar API call answers 500 (health checks included) while down."""
        self._core.faults.down = down

    def set_latency(self, seconds: float) -> None:
        """Delay every sidecar API call by `seconds`."""
        self._core.faults.latency = seconds

    def set_state_latency(self, seconds: float) -> None:
        """Make every state store operation take `seconds` (inside the component call: a Resiliency
        timeout fires while it runs, and a transaction still commits afterwards)."""
        self._core.faults.state_latency = seconds

    @property
    def resiliency(self) -> Resiliency:
        """The sidecars' resiliency engines (breaker states, loaded CRs)."""
        return self._core.resiliency

    async def set_unreachable(self, unreachable: bool = True) -> None:
        """Stop (connection refused) or restart, on the same ports, every served sidecar."""
        for server in self._servers:
            if unreachable:
                await server.stop()
            else:
                await server.start()

    # -- pub/sub -----------------------------------------------------------------------

    def fail_next_publishes(self, count: int = 1, *, status: int = 500) -> None:
        """The next `count` publish calls fail with `status` and store nothing.

        A bulk publish call counts as one: all its entries fail (bulk_publish.py)."""
        self._core.faults.failing_publishes = count
        self._core.faults.failing_publish_status = status

    def fail_bulk_publish_entries(self, *entry_ids: str, times: int = 1, error: str | None = None) -> None:
        """The Kafka producer rejects these entries of the next `times` bulk publish attempts (the
        other entries are stored): a partial failure (bulk_publish.py). Each attempt under the
        outbound policy counts, so `times` above its retries makes the entries fail for good."""
        for entry_id in entry_ids:
            self._core.faults.bulk.entries[entry_id] = times
        if error is not None:
            self._core.faults.bulk.error = error

    def drop_deliveries(self, count: int = 1, *, app_id: str | None = None, topic: str | None = None) -> None:
        """Lose the next `count` matching deliveries before they reach the app (they are retried)."""
        self._pubsub.deliverer.faults.lost.append(FaultBudget(count, app_id, topic))

    def duplicate_deliveries(self, count: int = 1, *, app_id: str | None = None, topic: str | None = None) -> None:
        """Deliver the next `count` matching messages a second time after they were acknowledged."""
        self._pubsub.deliverer.faults.duplicated.append(FaultBudget(count, app_id, topic))

    def pause_delivery(self) -> None:
        """Hold all deliveries (publishing still works) until `resume_delivery()`."""
        self._pubsub.deliverer.pause()

    def resume_delivery(self) -> None:
        self._pubsub.deliverer.resume()

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a deadline is this helper's point
        """Wait until every published message is settled for every subscriber."""
        await self._pubsub.deliverer.wait_idle(timeout)

    def published_messages(self, topic: str | None = None, *, pubsub: str | None = None) -> list[BrokerMessage]:
        """Messages accepted by the broker (including dead-lettered copies), oldest first."""
        return [
            m
            for m in self._pubsub.published
            if (topic is None or m.topic == topic) and (pubsub is None or m.pubsub == pubsub)
        ]

    def published(self, topic: str | None = None, *, pubsub: str | None = None) -> list[dict[str, Any]]:
        """CloudEvent envelopes published to `topic` (raw-payload messages are in `published_messages`)."""
        return [m.cloud_event for m in self.published_messages(topic, pubsub=pubsub) if m.cloud_event is not None]

    def deliveries(self, app_id: str | None = None, topic: str | None = None) -> list[DeliveryAttempt]:
        """Every delivery attempt, in order; `status_code` is None when it never reached the app."""
        return [
            a
            for a in self._pubsub.deliverer.attempts
            if (app_id is None or a.app_id == app_id) and (topic is None or a.topic == topic)
        ]

    async def delivery_statuses(self, app_id: str | None = None) -> Mapping[str, int]:
        """Counts of settled/pending deliveries by status: acked, dropped, dead_lettered, failed, pending."""
        return await self._broker.statuses(app_id)

    # -- jobs ----------------------------------------------------------------------------

    async def tick(self) -> int:
        """Trigger every job due at `clock.now()`; return the number of trigger attempts."""
        return await self._jobs.tick()

    async def jobs(self, app_id: str | None = None) -> list[Job]:
        """Scheduled jobs (all apps, or one app id)."""
        return await self._jobs.list_jobs(app_id)

    def job_triggers(self, app_id: str | None = None) -> list[JobTrigger]:
        """Every job trigger attempt sent so far."""
        return [t for t in self._jobs.triggers if app_id is None or t.app_id == app_id]

    # -- bindings ------------------------------------------------------------------------

    async def trigger_binding(
        self, app_id: str, name: str, data: bytes | None = None, *, metadata: Mapping[str, str] | None = None
    ) -> httpx2.Response:
        """POST `/<name>` to the app, as an input binding (e.g. bindings.cron) does.

        Docs: https://docs.dapr.io/reference/api/bindings_api/#invoking-service-code-through-input-bindings ;
        the body is the binding's data (empty for cron) and the binding metadata travels as
        headers (cron sends `timeZone` and `readTimeUTC`,
        https://docs.dapr.io/reference/components-reference/supported-bindings/cron/).
        """
        channel = self._apps.get(app_id)
        if channel is None:
            raise KeyError(f"app {app_id!r} is not registered")
        if metadata is None:
            now = self.clock.now()
            metadata = {"timeZone": "UTC", "readTimeUTC": now.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")}
        headers = {"content-type": "application/json", **metadata}
        return await channel.request("POST", f"/{name}", content=data or b"", headers=headers)
