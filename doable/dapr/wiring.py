"""Dapr mode's adapter family, connected once per process by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import SecretStr

from doable.dapr.adapters import DaprJobScheduler, DaprPublisher
from doable.dapr.client import DaprClient
from doable.domain.errors import Unavailable
from doable.settings import Settings
from doable.storage.dapr_outbox import DaprOutbox
from doable.storage.dapr_state import DaprUnitOfWorkFactory
from doable.topology import SECRET_STORE, STATE_STORE

log = structlog.get_logger("doable.dapr")

# Secret keys (in settings.dapr_secret_name) and the settings they fill when not set by env.
SECRET_SETTINGS = {
    "jwt-secret": "jwt_secret",
    "jwt-jwks-url": "jwt_jwks_url",
    "openai-api-key": "openai_api_key",
    "internal-token-secret": "internal_token_secret",
}


@dataclass
class DaprParts:
    settings: Settings
    client: DaprClient
    uow: DaprUnitOfWorkFactory
    publisher: DaprPublisher
    jobs: DaprJobScheduler
    outbox: DaprOutbox


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
    client = client or DaprClient(
        settings.dapr_http_endpoint,
        api_token=settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None,
    )
    await client.wait_ready(settings.dapr_startup_timeout)
    settings = await load_secrets(settings, client)
    publisher = DaprPublisher(client)
    return DaprParts(
        settings=settings,
        client=client,
        uow=DaprUnitOfWorkFactory(client, STATE_STORE),
        publisher=publisher,
        jobs=DaprJobScheduler(client),
        outbox=DaprOutbox(client, STATE_STORE, publisher),
    )
