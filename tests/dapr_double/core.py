"""State shared by every sidecar of one double (one state store, one broker, one scheduler)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from .apps import AppRegistry
from .clock import Clock
from .errors import DaprError
from .state import StateRepository
from .store_pg import PgStore

if TYPE_CHECKING:
    from .jobs import JobService
    from .pubsub import PubSubService

SecretStores = Mapping[str, Mapping[str, Mapping[str, str]]]


@dataclass
class SidecarFaults:
    """Switches a test flips to make the sidecar misbehave."""

    down: bool = False
    latency: float = 0.0
    failing_publishes: int = 0
    failing_publish_status: int = 500


@dataclass
class DoubleCore:
    clock: Clock
    pg: PgStore
    apps: AppRegistry
    state: StateRepository
    state_stores: Mapping[str, str]  # store name -> keyPrefix strategy
    pubsubs: frozenset[str]
    secret_stores: SecretStores
    api_token: str | None
    namespace: str
    pubsub: PubSubService
    jobs: JobService
    faults: SidecarFaults = field(default_factory=SidecarFaults)

    def key_prefix_strategy(self, store: str) -> str:
        """The store's keyPrefix strategy, or the 400 daprd returns for an unknown store.

        Error from dapr/dapr `pkg/api/errors/state.go` (StateStore.NotFound).
        """
        strategy = self.state_stores.get(store)
        if strategy is None:
            raise DaprError(
                400,
                "ERR_STATE_STORE_NOT_FOUND",
                f"state store {store} is not found",
                reason="DAPR_STATE_NOT_FOUND",
            )
        return strategy


def sidecar_of(request: Request) -> tuple[DoubleCore, str]:
    """The shared core and the app id of the sidecar that received `request`."""
    return request.app.state.core, request.app.state.app_id


def query_metadata(request: Request) -> dict[str, str]:
    """`metadata.<name>=<value>` query parameters, the way every Dapr HTTP API passes metadata."""
    prefix = "metadata."
    return {k[len(prefix) :]: v for k, v in request.query_params.items() if k.startswith(prefix)}
