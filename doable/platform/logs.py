"""Structured logging: structlog, JSON lines off a TTY, request/user/trace ids from context vars.

Nothing that looks like a token or secret is ever rendered (see `_redact`).
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api[_-]?key|cookie)", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
# Webhook signing secrets (doable.usecases.inbox), wherever a library's message may carry one.
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{8,}")
# The configured secrets (JWT secret, API keys, tokens): scrubbed from every rendered value.
_KNOWN: set[str] = set()
# Libraries whose debug output holds SQL parameters (task contents, webhook secrets): never
# below WARNING, whatever the log level.
_QUIET = ("aiosqlite", "sqlalchemy.engine", "sqlalchemy.pool", "asyncpg")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def register_secret(*values: str | None) -> None:
    """Never log these values (each at least 8 characters; shorter ones would scrub words)."""
    _KNOWN.update(v for v in values if v and len(v) >= 8)


def _scrub(text: str) -> str:
    if "eyJ" in text:
        text = _JWT.sub("[redacted-jwt]", text)
    if "whsec_" in text:
        text = _WEBHOOK_SECRET.sub("[redacted-webhook-secret]", text)
    for secret in _KNOWN:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and key not in ("token_type",):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = _scrub(value)
    return event


def configure(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and route stdlib logging (uvicorn, sqlalchemy) through it."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                # Again after the traceback is rendered: exception messages can hold secrets too.
                _redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "alembic", "httpx", "httpx2", "httpcore", "httpcore2", "mcp", "sse_starlette", *_QUIET):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def trace_id_from(traceparent: str | None) -> str:
    """The W3C trace id from a `traceparent` header, or a fresh one."""
    if traceparent and (m := _TRACEPARENT.match(traceparent.strip().lower())):
        return m.group(1)
    return secrets.token_hex(16)


def current_trace_id() -> str | None:
    value = get_contextvars().get("trace_id")
    return value if isinstance(value, str) else None


def bind(**values: Any) -> None:
    bind_contextvars(**values)


log = structlog.get_logger
