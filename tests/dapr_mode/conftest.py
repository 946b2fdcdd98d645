"""Doable in Dapr mode against the sidecar double (tests/dapr_double, over the real PostgreSQL).

Every app talks to its own sidecar of one double, as in a cluster: the API through a real port
(`doable.bootstrap.build` with DOABLE_RUNTIME=dapr and DAPR_HTTP_ENDPOINT, like `doable serve`),
the workers in-process (`doable.bootstrap.dapr.worker_transport`, like `doable worker NAME`). The
double delivers events, job triggers and service invocations to the apps registered with it,
with the app token, and requires the Dapr API token from them.

The double applies the manifests that ship: the chart rendered once per session with
values-minikube.yaml (`tests.dapr_double.manifests.render_chart`): each sidecar loads only the
Components scoped to its app id (state keyPrefix `name`, shared keys), the Configuration's secret
scopes and access-control policy, and the Resiliency CR's timeouts, retries and circuit breakers.
Retry waits and breaker periods run 100 times faster than written (`SystemTimer(scale=0.01)`);
timeouts keep their real length.

Version matrix: the `double` fixture impersonates daprd `dapr_version`. Every test runs against
1.18 (the default); the modules in `VERSION_MATRIX_MODULES` (jobs/reminders, workers, the
end-to-end path) and tests marked `@pytest.mark.dapr_matrix` also run against 1.16 and 1.17,
where the Jobs API is served at `/v1.0-alpha1/jobs` only. Running everything three times would
triple the suite's time for code paths that do not change between versions (state, publish,
invoke and secrets answer the same at the three tags, see tests/dapr_double/versions.py).

This conftest also overrides the root `runtime` and `app` fixtures, so test modules here that
import the embedded end-to-end tests (tests/e2e) run them unchanged in Dapr mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from doable.adapters.dapr.client import DaprClient
from doable.bootstrap import Runtime, build
from doable.bootstrap.dapr import worker_transport
from doable.bootstrap.workers import build_worker_app
from doable.domain.clock import Clock
from doable.platform import topology
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.conftest import JWT_SECRET, PG_DSN, lifespan_running
from tests.dapr_double import DaprDouble, ManualClock
from tests.dapr_double.manifests import Manifests, render_chart
from tests.dapr_double.resiliency import SystemTimer
from tests.dapr_double.versions import DEFAULT_VERSION, SUPPORTED_TAGS
from tests.e2e.conftest import mcp_as  # noqa: F401  (the e2e tests' MCP client fixture, re-used here)

APP_TOKEN = "app-token-" + "a" * 30
DAPR_TOKEN = "dapr-token-" + "d" * 30
SECRETS = {topology.SECRET_STORE: {"doable-secrets": {"jwt-secret": JWT_SECRET}}}

pytestmark = pytest.mark.postgres

#: Test modules that also run against every other supported daprd version (see the docstring).
VERSION_MATRIX_MODULES = frozenset({"test_workers", "test_end_to_end"})
#: The values file whose rendering the double applies (the local cluster's).
CHART_VALUES = ("values-minikube.yaml",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dapr_matrix: also run this Dapr-mode test against daprd 1.16 and 1.17")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `dapr_version`: every supported version for the matrix, else the default only."""
    if "dapr_version" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    in_matrix = module in VERSION_MATRIX_MODULES or metafunc.definition.get_closest_marker("dapr_matrix")
    versions = sorted(SUPPORTED_TAGS, reverse=True) if in_matrix else [DEFAULT_VERSION]
    metafunc.parametrize("dapr_version", versions, ids=[f"dapr{v}" for v in versions], scope="function")


@pytest.fixture(scope="session")
def chart_manifests() -> Manifests:
    """The chart's Components, Configuration and Resiliency, rendered once per session."""
    return render_chart(CHART_VALUES)


@pytest.fixture
def dapr_version() -> str:
    """The daprd version the double impersonates (parametrized by `pytest_generate_tests`)."""
    return DEFAULT_VERSION


@pytest.fixture
def dapr_clock() -> ManualClock:
    """The double's clock (jobs fire on `double.tick()`); starts at the real now."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def dapr_settings(settings: Settings) -> Settings:
    """Dapr-mode settings of every app: the JWT secret comes from the secret store, not env."""
    return settings.model_copy(
        update={
            "runtime": "dapr",
            "jwt_secret": None,
            "app_api_token": SecretStr(APP_TOKEN),
            "dapr_api_token": SecretStr(DAPR_TOKEN),
            "dapr_startup_timeout": 5.0,
            "outbox_poll_seconds": 0.2,
        }
    )


@pytest.fixture
async def double(
    pg_schema: str, dapr_clock: ManualClock, chart_manifests: Manifests, dapr_version: str
) -> AsyncIterator[DaprDouble]:
    async with DaprDouble(
        app_id=topology.API_APP_ID,
        dsn=PG_DSN,
        schema=pg_schema,
        manifests=chart_manifests,
        dapr_version=dapr_version,
        resiliency_timer=SystemTimer(scale=0.01),
        secrets=SECRETS,
        api_token=DAPR_TOKEN,
        app_token=APP_TOKEN,
        clock=dapr_clock,
        redelivery_backoff=0.01,
        max_delivery_attempts=5,
        drop_schema_on_close=False,  # pg_schema drops it
    ) as d:
        yield d


def sidecar_client(double: DaprDouble, app_id: str, **options: Any) -> DaprClient:
    """A Doable sidecar client for `app_id`, in-process (no port)."""
    return DaprClient(
        "http://127.0.0.1:3500",
        api_token=DAPR_TOKEN,
        transport=httpx2.ASGITransport(app=double.sidecar_app(app_id)),
        **options,
    )


@pytest.fixture
async def sidecar_url(double: DaprDouble) -> AsyncIterator[str]:
    """The API's sidecar on a real port (DAPR_HTTP_ENDPOINT)."""
    async with double.serve(app_id=topology.API_APP_ID) as url:
        yield url


@pytest.fixture
def runtime_clock() -> Clock | None:
    """The API's clock: the system's, unless a test module overrides this (e.g. with `dapr_clock`)."""
    return None


@pytest.fixture
async def runtime(dapr_settings: Settings, sidecar_url: str, runtime_clock: Clock | None) -> AsyncIterator[Runtime]:
    """Overrides the root fixture: the API's runtime in Dapr mode, built like `doable serve` builds it."""
    rt = await build(dapr_settings.model_copy(update={"dapr_http_endpoint": sidecar_url}), clock=runtime_clock)
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture
async def app(runtime: Runtime, double: DaprDouble) -> AsyncIterator[FastAPI]:
    """Overrides the root fixture: the API app, registered with the double (subscriptions,
    invocation target) and with its lifespan (MCP session manager, outbox relay) running."""
    application = create_app(runtime)
    await double.register_app(topology.API_APP_ID, asgi_app=application)
    async with lifespan_running(application):
        yield application


WorkerFactory = Callable[..., Awaitable[FastAPI]]


@pytest.fixture
async def start_worker(double: DaprDouble, dapr_settings: Settings) -> AsyncIterator[WorkerFactory]:
    """`await start_worker("reminders", clock=...)`: one worker app as `doable worker NAME` builds it,
    on its own sidecar of the double, registered there (subscriptions, jobs, the cron binding)."""
    closers: list[Callable[[], Awaitable[None]]] = []

    async def start(name: str, *, clock: Clock | None = None) -> FastAPI:
        app_id = topology.WORKER_APP_IDS[name]
        transport = await worker_transport(dapr_settings, name, client=sidecar_client(double, app_id))
        worker_app = build_worker_app(dapr_settings, name, transport, clock=clock)
        await double.register_app(app_id, asgi_app=worker_app)
        if transport.aclose is not None:
            closers.append(transport.aclose)
        return worker_app

    yield start
    for close in closers:
        await close()


async def settle(runtime: Runtime, double: DaprDouble, *, within: float = 15.0) -> None:
    """Wait until the outbox is relayed and every delivery settled (handlers may publish more)."""
    with anyio.fail_after(within):
        while True:
            if await runtime.outbox.depth():
                await asyncio.sleep(0.02)  # the relay runs in the app; poll its progress
                continue
            await double.wait_idle(within)
            if not await runtime.outbox.depth():
                return


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until `condition()` holds (things other tasks or processes do), at most `within` seconds."""
    with anyio.fail_after(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)
