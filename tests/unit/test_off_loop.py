"""Recurrence validation and expansion run off the event loop: while a slow rule is being checked,
the loop keeps serving everything else. Each check here blocks until a coroutine on the loop
releases it, so if it ran on the loop it could never be released (the test then fails, after the
guard's wait, instead of hanging)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from doable.bootstrap import Runtime
from doable.usecases import next_occurrence, task_steps
from doable.usecases import series as series_service
from doable.usecases.inputs import NewTask, TaskChanges

GUARD_SECONDS = 30


def _blocking(real: Callable[..., Any], released: threading.Event, called: threading.Event) -> Callable[..., Any]:
    def slow(*args: Any, **kwargs: Any) -> Any:
        called.set()
        if not released.wait(GUARD_SECONDS):
            raise AssertionError("the event loop was blocked while the recurrence was checked")
        return real(*args, **kwargs)

    return slow


async def _release_from_the_loop(released: threading.Event, called: threading.Event) -> None:
    while not called.is_set():  # noqa: ASYNC110 - a thread sets it; an asyncio.Event cannot be set from there
        await asyncio.sleep(0.01)
    released.set()  # only reachable if the loop is free while the check runs


@pytest.mark.parametrize(
    ("module", "name", "action"),
    [
        (task_steps, "build_recurrence", "add"),
        (task_steps, "build_recurrence", "update"),
        (next_occurrence, "plan_next", "next occurrence"),
        (series_service, "plan_skip", "skip"),
    ],
)
async def test_recurrence_work_runs_off_the_event_loop(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, action: str
) -> None:
    service = runtime.service
    task = await service.add("alice", NewTask(title="standup", due="2030-01-07T09:00", recurrence="daily"))
    released, called = threading.Event(), threading.Event()
    monkeypatch.setattr(module, name, _blocking(getattr(module, name), released, called))

    if action == "add":
        work = service.add("alice", NewTask(title="water", due="2030-01-07T09:00", recurrence="weekly"))
    elif action == "update":
        work = service.update("alice", task.task_id, TaskChanges(recurrence="weekly"))
    elif action == "next occurrence":
        done = await service.complete("alice", task.task_id)
        work = service.create_next_occurrence(done)
    else:
        work = service.series.skip("alice", task.task_id)
    result, _ = await asyncio.gather(work, _release_from_the_loop(released, called))
    assert result is not None
