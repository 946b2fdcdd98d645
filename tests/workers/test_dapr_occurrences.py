"""The Dapr-mode occurrence creator's batch form (doable.adapters.dapr.invocation.DaprOccurrences): one
service invocation per completion, each user's in order, different users at once, and the first
failure raised once every user's calls were tried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from doable.adapters.dapr.invocation import NEXT_OCCURRENCE_PATH, DaprOccurrences
from doable.domain.errors import Conflict
from doable.domain.task import Task

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def task(user: str, task_id: int) -> Task:
    return Task(user_id=user, task_id=task_id, title=f"{user} {task_id}", created_at=NOW, updated_at=NOW)


class Api:
    """Stands in for the sidecar: answers each invocation with the next occurrence (id + 100),
    409 for the completions in `conflicts`, and records the calls in flight."""

    def __init__(self, conflicts: set[tuple[str, int]] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.conflicts = conflicts or set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def invoke(self, app_id: str, method: str, *, body: dict[str, Any], **_: Any) -> httpx2.Response:
        assert method == NEXT_OCCURRENCE_PATH
        done = Task.model_validate(body["completed"])
        key = (done.user_id, done.task_id)
        self.calls.append(key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if key in self.conflicts:
            return httpx2.Response(409, json={"message": "conflict"})
        nxt = done.model_copy(update={"task_id": done.task_id + 100})
        return httpx2.Response(200, json={"task": nxt.model_dump(mode="json")})


async def test_each_users_completions_in_order_and_the_users_at_once() -> None:
    api = Api()
    batch = [task("alice", 1), task("bob", 1), task("alice", 2), task("carol", 1)]
    created = await DaprOccurrences(api).create_next_many(batch)  # type: ignore[arg-type]
    assert [t.task_id if t else None for t in created] == [101, 101, 102, 101]
    assert [c for c in api.calls if c[0] == "alice"] == [("alice", 1), ("alice", 2)]
    assert api.most_in_flight == 3


async def test_the_first_failure_is_raised_after_the_other_users_were_tried() -> None:
    api = Api(conflicts={("alice", 1)})
    batch = [task("alice", 1), task("alice", 2), task("bob", 1)]
    with pytest.raises(Conflict):
        await DaprOccurrences(api).create_next_many(batch)  # type: ignore[arg-type]
    # alice's later completion waits for the retry (one by one, in order); bob's was created.
    assert sorted(api.calls) == [("alice", 1), ("bob", 1)]
