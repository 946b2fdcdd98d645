"""Configuration: one pydantic-settings class, env prefix DOABLE_. Nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("doable", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOABLE_", env_file=None, extra="ignore")

    runtime: Literal["embedded", "dapr"] = Field("embedded", description="Adapter family: embedded (SQLite, in-process) or dapr.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Where embedded mode keeps its SQLite file and secrets.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under data_dir. postgres:// works too.")
    database_schema: str | None = Field(None, description="PostgreSQL schema to use (search_path); default the server's.")
    database_timeout_seconds: float = Field(
        10.0, gt=0, description="PostgreSQL connect and statement timeout: an unreachable database is a 503 after this."
    )
    host: str = Field("127.0.0.1", description="Bind address of `doable serve`.")
    port: int = Field(8000, description="Port of `doable serve`.")
    public_url: str | None = Field(None, description="External base URL (MCP auth metadata, console links).")
    log_format: Literal["auto", "json", "console"] = Field("auto", description="auto = console on a TTY, JSON otherwise.")
    log_level: str = Field("info", description="Log level.")

    jwt_secret: SecretStr | None = Field(None, description="HS256 shared secret (e.g. Better Auth's). Embedded mode generates one.")
    jwt_jwks_url: str | None = Field(None, description="JWKS URL for RS/ES/EdDSA tokens; replaces the shared secret.")
    jwt_issuer: str = Field("doable", description="Expected `iss`.")
    jwt_audience: str = Field("doable", description="Expected `aud`.")
    jwt_leeway_seconds: int = Field(30, description="Allowed clock skew.")
    jwt_algorithms: list[str] = Field(["HS256"], description="Accepted algorithms for the shared secret.")

    local_user: str = Field("local", description="The user of `doable mcp` (stdio) in embedded mode without DOABLE_TOKEN.")
    token: SecretStr | None = Field(None, description="A bearer token; `doable mcp` takes its user from it.")

    tasks_per_user: int = Field(100_000, description="Quota of tasks per user.")
    reminders_per_task: int = Field(10, description="Quota of reminders per task.")
    max_body_bytes: int = Field(1_048_576, description="Largest accepted request body.")
    allowed_hosts: list[str] = Field(["*"], description="Host headers the MCP endpoint accepts (DNS-rebinding protection).")

    # Abuse limits (doable/web/limits.py, `doable serve`'s HTTP server).
    live_streams_per_user: int = Field(
        20, ge=1, description="Most live streams (SSE) one user may hold open at once; more get 429."
    )
    auth_failures_per_minute: int = Field(
        60, ge=0, description="Failed authentications (401) one client IP may cause per minute before it gets 429 "
        "for the rest of the minute; 0 disables the limit."
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest wait for a request's headers or the rest of its body; then 408 / closed."
    )
    keep_alive_seconds: float = Field(5.0, gt=0, description="Idle keep-alive connections are closed after this.")
    max_header_bytes: int = Field(
        65_536, ge=4096, description="Largest request line plus headers the HTTP server accepts (431 beyond)."
    )

    # Workers (reminders, notifications, recurrence, audit) and event delivery.
    outbox_poll_seconds: float = Field(2.0, gt=0, description="Outbox relay poll interval (commits also wake it).")
    outbox_idle_max_seconds: float = Field(
        300.0, gt=0, description="Dapr mode: longest wait between two polls of an idle outbox relay."
    )
    event_retry_attempts: int = Field(5, ge=1, description="Embedded bus: handler attempts before dead-lettering.")
    reminder_sweep_seconds: float = Field(60.0, gt=0, description="Embedded mode: how often the reminder sweeper runs.")
    reminder_sweep_grace_seconds: float = Field(30.0, ge=0, description="Sweeper sends reminders this late or later.")
    reminder_claim_lease_seconds: float = Field(
        120.0, gt=0, description="A reminder whose sender died mid-send is sent again by the sweeper after this."
    )
    webhook_max_attempts: int = Field(6, ge=1, description="Webhook attempts before a delivery is recorded as failed.")
    webhook_retry_seconds: float = Field(10.0, gt=0, description="First webhook retry delay; then 3x longer each.")
    webhook_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one webhook request.")
    webhook_allow_private: bool = Field(False, description="Allow webhooks to private/loopback hosts (local use).")
    processed_ttl_hours: int = Field(168, ge=1, description="How long consumers remember processed message ids.")
    sse_keepalive_seconds: float = Field(15.0, gt=0, description="Comment line interval on idle live streams.")

    # Dapr mode: the sidecar, and the secrets read from its secret store.
    dapr_http_endpoint: str = Field(
        "http://127.0.0.1:3500",
        validation_alias=AliasChoices("dapr_http_endpoint", "doable_dapr_http_endpoint"),
        description="DAPR_HTTP_ENDPOINT: the sidecar's HTTP API.",
    )
    dapr_http_port: int | None = Field(
        None,
        validation_alias=AliasChoices("dapr_http_port", "doable_dapr_http_port"),
        description="DAPR_HTTP_PORT (set by `dapr run` and the injector): the sidecar on 127.0.0.1 when DAPR_HTTP_ENDPOINT is unset.",
    )
    dapr_api_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("dapr_api_token", "doable_dapr_api_token"),
        description="DAPR_API_TOKEN: sent to the sidecar when it requires one.",
    )
    app_api_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("app_api_token", "doable_app_api_token"),
        description="APP_API_TOKEN: the sidecar sends it on every call to the app; internal routes require it.",
    )
    dapr_secret_name: str = Field("doable-secrets", description="Secret (in the Dapr secret store) holding jwt-secret, openai-api-key.")
    dapr_startup_timeout: float = Field(60.0, description="Seconds to wait for the sidecar at start-up.")
    # The app's own timeouts must outlive the sidecar's resiliency budget for the same call
    # (timeout x attempts + back-off), or a call reported as failed can still succeed behind it.
    # The chart sets all three from dapr.resiliency; tests/deploy checks they fit.
    dapr_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for one state, jobs or secrets call through the sidecar."
    )
    dapr_publish_timeout: float = Field(30.0, gt=0, description="Seconds to wait for one publish through the sidecar.")
    dapr_invoke_timeout: float = Field(
        30.0, gt=0, description="Seconds to wait for one service invocation through the sidecar."
    )

    # Chat (agent/): the model, and how the agent reaches the MCP tools.
    model: str = Field("gpt-5.6-luna", description="Chat model name (OpenAI, or the one your OPENAI_BASE_URL server serves).")
    model_api: Literal["auto", "responses", "chat_completions"] = Field(
        "auto", description="auto = Responses API for OpenAI, Chat Completions when OPENAI_BASE_URL is set."
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("openai_api_key", "doable_openai_api_key"),
        description="OPENAI_API_KEY: enables chat with OpenAI (optional for OPENAI_BASE_URL servers).",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("openai_base_url", "doable_openai_base_url"),
        description="OPENAI_BASE_URL: an OpenAI-compatible server (Ollama, vLLM, LM Studio), e.g. http://localhost:11434/v1.",
    )
    openai_tracing: bool = Field(False, description="Export Agents SDK traces to OpenAI (needs OPENAI_API_KEY).")
    chat_history_tokens: int = Field(8000, ge=500, description="Token budget of thread history sent to the model per turn.")
    chat_message_max_chars: int = Field(4000, ge=1, description="Longest accepted chat message.")
    chat_max_turns: int = Field(12, ge=1, le=50, description="Most model calls (tool round trips) per chat turn.")
    mcp_url: str | None = Field(None, description="MCP endpoint the chat agent calls; default this process's own /mcp on loopback.")
    mcp_token_audience: str = Field("doable-mcp", description="`aud` of the short-lived tokens the chat agent mints for MCP.")
    mcp_token_ttl_seconds: int = Field(300, ge=30, le=3600, description="Lifetime of those tokens.")
    internal_token_secret: SecretStr | None = Field(
        None, description="HS256 secret for those tokens; default the JWT secret, else generated under data_dir."
    )

    # MCP clients (mcp_server/, `doable mcp`): confirmations asked in the client, the stdio server's workers.
    mcp_request_state_keys: list[SecretStr] = Field(
        [],
        description="Keys (32+ bytes each, JSON list) sealing the state an MCP call that asks the user (elicitation) "
        "hands the client between rounds; the first seals, all open (rotation). Empty: derived from "
        "DOABLE_INTERNAL_TOKEN_SECRET or the JWT secret, which every replica shares.",
    )
    mcp_stdio_workers: bool = Field(
        True,
        description="`doable mcp` in embedded mode also runs the reminder, recurrence and notification workers, so "
        "reminders fire while only Claude Desktop is open.",
    )
    timezone: str | None = Field(
        None,
        description="`doable mcp`: the user's timezone (IANA name, e.g. Europe/Berlin), set at start; the "
        "Claude Desktop bundle's Time zone setting.",
    )

    # Web console (doable/web/console.py, served at /).
    console_local_signin: bool | None = Field(
        None,
        description="The console's 'local user' sign-in (loopback clients only, and only for DOABLE_LOCAL_USER). "
        "Unset: on only for the embedded single-user default (no DOABLE_JWT_SECRET, no JWKS); true: also "
        "with a configured shared secret (embedded mode); false: off.",
    )
    chatkit_domain_key: str | None = Field(
        None, description="ChatKit domain key: the console loads OpenAI's ChatKit web component (from its CDN)."
    )

    # OAuth for remote MCP clients (doable/oauth): an external authorization server, or the built-in one.
    oauth_issuer: str | None = Field(
        None,
        description="Issuer URL of an external OAuth authorization server (Keycloak realm, Auth0 tenant, Better Auth, "
        "any OpenID provider issuing JWT access tokens) whose tokens /mcp accepts; its keys are found by discovery. "
        "Setting it turns the built-in authorization server off.",
    )
    oauth_audience: str | None = Field(
        None, description="Expected `aud` of the external server's tokens; default the MCP resource URL (<public URL>/mcp)."
    )
    oauth_builtin: bool | None = Field(
        None,
        description="The built-in authorization server (the local user approves clients on a consent page). "
        "Unset: on in embedded mode unless DOABLE_OAUTH_ISSUER is set; never in Dapr mode.",
    )
    oauth_access_token_ttl_seconds: int = Field(
        900, ge=60, le=86400, description="Lifetime of the built-in server's access tokens."
    )
    oauth_refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=3600, le=366 * 86400, description="Lifetime of its refresh tokens (each use rotates them)."
    )
    oauth_max_clients: int = Field(
        1000, ge=1, description="Most clients dynamic registration may create (metadata-document clients are not stored)."
    )
    oauth_client_metadata_allow_private: bool = Field(
        False, description="Fetch client metadata documents from private and loopback hosts too (local clients, tests)."
    )

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 0 <= v <= 65535:
            raise ValueError("port must be 0-65535")
        return v

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "doable.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path}"
