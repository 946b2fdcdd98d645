"""CPU-bound work off the event loop.

Recurrence validation and expansion can take a while for a pathological rule (the recurrence
module bounds the search; this keeps even a bounded search from stalling every other request,
live stream and worker of the process): callers run it in a worker thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

P = ParamSpec("P")
R = TypeVar("R")


async def off_loop(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` in a worker thread; its exception, if any, is raised here."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
