"""State shared by every sidecar of one double (one state store, one broker, one scheduler).

With manifests (`DaprDouble(manifests=...)`), what one sidecar sees follows what daprd loads for its
app id: the Components scoped to it, the Configuration (secret scopes, access control) and the
Resiliency CRs in its scope. Without manifests the double describes itself with the keyword
arguments of `DaprDouble` (every sidecar loads every named component).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request

from .apps import AppRegistry
from .clock import Clock
from .errors import DaprError
from .manifests import Configuration, Manifests
from .resiliency import Permanent, Resiliency
from .state import KEY_PREFIX_STRATEGIES, StateRepository
from .store_pg import PgStore
from .versions import DaprVersion

if TYPE_CHECKING:
    from .jobs import JobService
    from .pubsub import PubSubService

SecretStores = Mapping[str, Mapping[str, Mapping[str, str]]]
T = TypeVar("T")


@dataclass
class BulkFaults:
    """`DaprDouble.fail_bulk_publish_entries`: entry id -> attempts left that the producer rejects."""

    entries: dict[str, int] = field(default_factory=dict)
    error: str = "kafka server: Request exceeded the user-specified time limit in the request"

    def take(self, entry_id: str) -> bool:
        left = self.entries.get(entry_id, 0)
        if left <= 0:
            return False
        self.entries[entry_id] = left - 1
        return True


@dataclass
class SidecarFaults:
    """Switches a test flips to make the sidecar misbehave."""

    down: bool = False
    latency: float = 0.0
    failing_publishes: int = 0
    failing_publish_status: int = 500
    # Seconds every state store operation takes (inside the component call, so under the
    # Resiliency timeout: a transaction slower than its timeout still commits, see resiliency.py).
    state_latency: float = 0.0
    # Entries of bulk publishes the Kafka producer rejects (bulk_publish.py BulkFaults).
    bulk: BulkFaults = field(default_factory=BulkFaults)


@dataclass
class DoubleCore:
    clock: Clock
    pg: PgStore
    apps: AppRegistry
    state: StateRepository
    state_stores: Mapping[str, str]  # store name -> keyPrefix strategy (no manifests)
    pubsubs: frozenset[str]  # pub/sub names (no manifests)
    secret_stores: SecretStores  # secret data by store; with manifests, only loaded stores answer
    api_token: str | None
    namespace: str
    pubsub: PubSubService
    jobs: JobService
    faults: SidecarFaults = field(default_factory=SidecarFaults)
    version: DaprVersion = field(default_factory=lambda: DaprVersion("1.18"))
    manifests: Manifests | None = None
    resiliency: Resiliency = field(default_factory=Resiliency.none)
    config_name: str | None = None

    # -- what one sidecar loaded -------------------------------------------------------

    def component_names(self, app_id: str, kind: str) -> list[str]:
        """Names of the components of one building block ("state", "pubsub", "secretstores") the
        sidecar of `app_id` loaded."""
        if self.manifests is not None:
            return [c.name for c in self.manifests.components_for(app_id, kind)]
        if kind == "state":
            return list(self.state_stores)
        if kind == "pubsub":
            return sorted(self.pubsubs)
        if kind == "secretstores":
            return list(self.secret_stores)
        return []

    def pubsubs_for(self, app_id: str) -> frozenset[str]:
        return frozenset(self.component_names(app_id, "pubsub"))

    @property
    def configuration(self) -> Configuration | None:
        """The Configuration every sidecar uses (the pods' `dapr.io/config`)."""
        if self.manifests is None:
            return None
        if self.config_name is not None:
            return self.manifests.configuration_named(self.config_name)
        return self.manifests.configuration

    @property
    def effective_namespace(self) -> str:
        """NAMESPACE of the sidecars: the keyword argument, else the manifests' namespace."""
        if self.namespace:
            return self.namespace
        return self.manifests.namespace if self.manifests is not None else ""

    def key_prefix_strategy(self, store: str, app_id: str) -> str:
        """The store's keyPrefix strategy for `app_id`'s sidecar, or daprd's error for a store it lacks.

        Errors from dapr/dapr `pkg/api/http/http.go` getStateStoreWithRequestValidation and
        `pkg/api/errors/state.go`: no state store loaded at all -> 500 NotConfigured; this one
        not loaded (unknown, or scoped to other app ids) -> 400 NotFound. The keyPrefix metadata
        (default "appid") is read by components-contrib `state/utils` / daprd's state loader
        (`pkg/components/state/state_config.go`).
        """
        if self.manifests is None:
            strategy = self.state_stores.get(store)
            names = list(self.state_stores)
        else:
            loaded = {c.name: c for c in self.manifests.components_for(app_id, "state")}
            names = list(loaded)
            strategy = None
            if store in loaded:
                strategy = loaded[store].metadata.get("keyPrefix", "appid").lower() or "appid"
                if strategy not in KEY_PREFIX_STRATEGIES:
                    raise DaprError(500, "ERR_STATE_STORE_NOT_CONFIGURED", f"state store {store} is not configured")
        if not names:
            raise DaprError(
                500,
                "ERR_STATE_STORE_NOT_CONFIGURED",
                f"state store {store} is not configured",
                reason="DAPR_STATE_NOT_CONFIGURED",
                metadata={"appID": app_id},
            )
        if strategy is None:
            raise DaprError(
                400,
                "ERR_STATE_STORE_NOT_FOUND",
                f"state store {store} is not found",
                reason="DAPR_STATE_NOT_FOUND",
                metadata={"appID": app_id},
            )
        return strategy

    # -- resiliency ----------------------------------------------------------------------

    async def outbound(
        self,
        app_id: str,
        component: str,
        operation: Callable[[], Awaitable[T]],
        *,
        honours_deadline: bool = True,
    ) -> T:
        """Run a component call of `app_id`'s sidecar under its outbound Resiliency policy."""
        policy = self.resiliency.component_outbound(app_id, component)
        if policy is None:
            try:
                return await operation()
            except Permanent as exc:
                raise exc.error from exc
        return await policy.run(operation, honours_deadline=honours_deadline)


def sidecar_of(request: Request) -> tuple[DoubleCore, str]:
    """The shared core and the app id of the sidecar that received `request`."""
    return request.app.state.core, request.app.state.app_id


def query_metadata(request: Request) -> dict[str, str]:
    """`metadata.<name>=<value>` query parameters, the way every Dapr HTTP API passes metadata."""
    prefix = "metadata."
    return {k[len(prefix) :]: v for k, v in request.query_params.items() if k.startswith(prefix)}
