"""Builders both assemblies share: the SQL engine, the token verifier, the task service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from doable.domain.clock import Clock
from doable.platform.auth import JwksCache, TokenVerifier
from doable.platform.logs import current_trace_id
from doable.platform.settings import Settings
from doable.ports import UnitOfWorkFactory
from doable.usecases.service import Limits, TaskService

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def sql_engine(settings: Settings) -> AsyncEngine:
    """The SQL engine for `settings` (URL, schema, timeouts): the one builder `serve`, `mcp`,
    `migrate` and the worker apps share, so all of them use the same schema."""
    from doable.adapters.sql.engine import create_engine

    return create_engine(
        settings.effective_database_url, schema=settings.database_schema, timeout=settings.database_timeout_seconds
    )


def token_verifier(settings: Settings, secret: str | None, jwks: JwksCache | None) -> TokenVerifier:
    """Verifies user tokens with the JWKS when one is configured, else with the shared secret."""
    return TokenVerifier(
        secret=None if jwks else secret,
        jwks=jwks,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        leeway_seconds=settings.jwt_leeway_seconds,
    )


def task_service(uow: UnitOfWorkFactory, clock: Clock, settings: Settings) -> TaskService:
    return TaskService(
        uow,
        clock,
        limits=Limits(tasks_per_user=settings.tasks_per_user, reminders_per_task=settings.reminders_per_task),
        trace_id=current_trace_id,
    )
