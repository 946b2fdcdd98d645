"""The Dapr assembly: the API process (`doable serve`, `doable mcp` with DOABLE_RUNTIME=dapr) and
one worker process (`doable worker NAME`), connected once per process through the sidecar.

The API keeps tasks, profiles and the outbox in Dapr state; its outbox relay (started with the
app) publishes the events through the sidecar; the inbox and history are read from Dapr state.
Neither process touches a database or a broker directly: everything goes through the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr

from doable.adapters.dapr.audit import DaprAuditLog
from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.delivery_records import DaprDeadLetters, DaprProcessedMessages
from doable.adapters.dapr.inbox import DaprInbox
from doable.adapters.dapr.invocation import DaprOccurrences, DaprTaskLookup
from doable.adapters.dapr.messaging import DaprJobScheduler, DaprPublisher
from doable.adapters.dapr.outbox import DaprOutbox, DaprOutboxReader
from doable.adapters.dapr.reminders import DaprReminderLedger
from doable.adapters.dapr.state import DaprUnitOfWorkFactory
from doable.adapters.embedded.relay import CommitSignal
from doable.bootstrap.common import task_service, token_verifier
from doable.bootstrap.runtime import Runtime
from doable.bootstrap.workers import WorkerStores, WorkerTransport
from doable.domain.clock import Clock, SystemClock
from doable.domain.errors import DoableError, Unavailable
from doable.platform.auth import JwksCache
from doable.platform.settings import Settings
from doable.platform.topology import SECRET_STORE, STATE_STORE, WORKER_APP_IDS
from doable.usecases.history import History
from doable.usecases.inbox import Inbox

if TYPE_CHECKING:
    from chatkit.store import Store
    from fastapi import APIRouter

    from agent.context import ChatContext

log = structlog.get_logger("doable.dapr")

# Secret keys (in settings.dapr_secret_name) and the settings they fill when not set by env.
SECRET_SETTINGS = {
    "jwt-secret": "jwt_secret",
    "jwt-jwks-url": "jwt_jwks_url",
    "openai-api-key": "openai_api_key",
    "internal-token-secret": "internal_token_secret",
}


class ConfigurationError(DoableError):
    """Dapr mode cannot run with these settings; the message says what to set."""

    code = "configuration"


@dataclass
class DaprParts:
    settings: Settings
    client: DaprClient
    uow: DaprUnitOfWorkFactory
    publisher: DaprPublisher
    jobs: DaprJobScheduler
    outbox: DaprOutbox
    store: str = STATE_STORE


def sidecar_endpoint(settings: Settings) -> str:
    """DAPR_HTTP_ENDPOINT, else 127.0.0.1 on DAPR_HTTP_PORT (what `dapr run` sets), else :3500."""
    if "dapr_http_endpoint" not in settings.model_fields_set and settings.dapr_http_port:
        return f"http://127.0.0.1:{settings.dapr_http_port}"
    return settings.dapr_http_endpoint


def sidecar_client(settings: Settings) -> DaprClient:
    token = settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None
    return DaprClient(
        sidecar_endpoint(settings),
        api_token=token,
        timeout=settings.dapr_timeout,
        publish_timeout=settings.dapr_publish_timeout,
        invoke_timeout=settings.dapr_invoke_timeout,
    )


async def load_secrets(settings: Settings, client: DaprClient) -> Settings:
    """Settings with secrets from the Dapr secret store filled in (env still wins)."""
    try:
        secrets = await client.get_secret(SECRET_STORE, settings.dapr_secret_name)
    except Unavailable:
        log.warning("dapr.secrets_unavailable", secret=settings.dapr_secret_name)
        return settings
    update: dict[str, object] = {}
    for key, field in SECRET_SETTINGS.items():
        if key in secrets and getattr(settings, field) is None:
            value = secrets[key]
            update[field] = value if field == "jwt_jwks_url" else SecretStr(value)
    log.info("dapr.secrets_loaded", keys=sorted(k for k in SECRET_SETTINGS if k in secrets))
    return settings.model_copy(update=update)


async def connect(settings: Settings, *, client: DaprClient | None = None) -> DaprParts:
    """Wait for the sidecar (without blocking the loop), read secrets, build the adapters."""
    client = client or sidecar_client(settings)
    try:
        await client.wait_ready(settings.dapr_startup_timeout)
        settings = await load_secrets(settings, client)
    except BaseException:
        await client.aclose()
        raise
    publisher = DaprPublisher(client)
    outbox = DaprOutbox(
        client,
        STATE_STORE,
        publisher,
        poll_seconds=settings.outbox_poll_seconds,
        idle_max_seconds=settings.outbox_idle_max_seconds,
    )
    return DaprParts(
        settings=settings,
        client=client,
        # Each commit names this process's relay as its events' publisher, and wakes it.
        uow=DaprUnitOfWorkFactory(client, STATE_STORE, relay=outbox.relay_id, on_commit=outbox.nudge),
        publisher=publisher,
        jobs=DaprJobScheduler(client),
        outbox=outbox,
    )


async def build_runtime(settings: Settings, *, clock: Clock | None = None, client: DaprClient | None = None) -> Runtime:
    """The API process in Dapr mode. `client` replaces the sidecar client (tests)."""
    clock = clock or SystemClock()
    parts = await connect(settings, client=client)
    settings = parts.settings
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if secret is None and settings.jwt_jwks_url is None:
        await parts.client.aclose()
        # A generated secret would differ per replica and vanish with the pod.
        raise ConfigurationError(
            f"Dapr mode needs the token key: put jwt-secret (or jwt-jwks-url) in the secret "
            f"{settings.dapr_secret_name!r} of the secret store, or set DOABLE_JWT_SECRET / DOABLE_JWT_JWKS_URL"
        )
    jwks = JwksCache(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
    commits = CommitSignal(parts.uow)
    service = task_service(commits, clock, settings)
    inbox_store = DaprInbox(parts.client, parts.store)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        service=service,
        verifier=token_verifier(settings, secret, jwks),
        outbox=DaprOutboxReader(parts.outbox),
        signing_secret=secret,
        inbox=Inbox(inbox_store, inbox_store, clock, allow_private_webhooks=settings.webhook_allow_private),
        history=History(DaprAuditLog(parts.client, parts.store)),
        chat_store=lambda: _chat_store(parts, clock),
        standalone=False,
        api_routes=_api_routes,
        checks={"sidecar": parts.client.check},
        closers=(parts.client.aclose,),
        # The relay runs in the serving process (Runtime.start); each commit wakes it at once.
        background=(parts.outbox,),
        dapr=parts,
    )
    log.info("dapr.runtime_ready", app="api", sidecar=sidecar_endpoint(settings))
    return runtime


def _chat_store(parts: DaprParts, clock: Clock) -> Store[ChatContext]:
    # Imported when the chat router is built: the chat stack stays out of processes without chat.
    from agent.dapr_store import DaprChatStore

    return DaprChatStore(parts.client, parts.store, clock)


def _api_routes(runtime: Runtime) -> list[APIRouter]:
    """The routes the sidecar calls on the API app (subscriptions, service invocation)."""
    from doable.web.dapr_routes import dapr_router

    token = runtime.settings.app_api_token.get_secret_value() if runtime.settings.app_api_token else None
    return [dapr_router(runtime.service, runtime.live.subscriptions(), clock=runtime.clock, app_token=token)]


async def signing_settings(settings: Settings) -> Settings:
    """The settings with the token key filled in from the Dapr secret store, read through the
    sidecar exactly as the API reads it (`doable token`: sign with the key the API verifies with)."""
    client = sidecar_client(settings)
    try:
        try:
            await client.wait_ready(settings.dapr_startup_timeout)
        except Unavailable as exc:
            raise ConfigurationError(
                f"the Dapr sidecar at {sidecar_endpoint(settings)} is not answering ({exc}); run `doable token` "
                "in a container next to it, e.g. kubectl exec deploy/doable-api -c api -- doable token --user NAME"
            ) from None
        settings = await load_secrets(settings, client)
    finally:
        await client.aclose()
    if settings.jwt_secret is None and not settings.jwt_jwks_url:
        raise ConfigurationError(
            f"no jwt-secret in the secret {settings.dapr_secret_name!r} of the Dapr secret store "
            "(the API cannot verify tokens either); create it, e.g. kubectl create secret generic "
            f"{settings.dapr_secret_name} --from-literal=jwt-secret=..."
        )
    return settings


async def worker_transport(settings: Settings, name: str, *, client: DaprClient | None = None) -> WorkerTransport:
    """One worker's transport and stores, all through its sidecar (`doable worker NAME`)."""
    if name not in WORKER_APP_IDS:
        raise ConfigurationError(f"unknown worker {name!r}; choose one of {', '.join(WORKER_APP_IDS)}")
    parts = await connect(settings, client=client)
    c, store = parts.client, parts.store
    inbox = DaprInbox(c, store)
    stores = WorkerStores(
        processed=DaprProcessedMessages(c, store, ttl=timedelta(hours=settings.processed_ttl_hours)),
        ledger=DaprReminderLedger(c, store),
        inbox=inbox,
        webhooks=inbox,
        audit=DaprAuditLog(c, store),
        dead_letters=DaprDeadLetters(c, store),
    )
    log.info("dapr.worker_ready", worker=name, sidecar=sidecar_endpoint(settings))
    return WorkerTransport(
        publisher=parts.publisher,
        jobs=parts.jobs,
        tasks=DaprTaskLookup(c) if name == "reminders" else None,
        occurrences=DaprOccurrences(c) if name == "recurrence" else None,
        checks={"sidecar": c.check},
        aclose=c.aclose,
        stores=stores,
    )
