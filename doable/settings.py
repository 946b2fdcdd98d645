"""Configuration: one pydantic-settings class, env prefix DOABLE_. Nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("doable", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOABLE_", env_file=None, extra="ignore")

    runtime: Literal["embedded", "dapr"] = Field("embedded", description="Adapter family: embedded (SQLite, in-process) or dapr.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Where embedded mode keeps its SQLite file and secrets.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under data_dir. postgres:// works too.")
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
