"""Who is acting in the current request, for the audit history ("agent" for the MCP tools).

A context variable, like the trace id: the transport sets it once per call, and the service
stamps it on every event it records meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_actor: ContextVar[str | None] = ContextVar("doable_actor", default=None)


def current_actor() -> str | None:
    return _actor.get()


@contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)
