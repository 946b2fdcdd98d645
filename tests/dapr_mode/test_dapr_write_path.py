"""The Dapr audit store's batch form (issue 16): a bulk of task events is audited in a couple of
bulk reads and one state transaction, with the same history as one event at a time, nothing added
by a redelivered bulk, and a concurrent writer's conflict retried on fresh reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from doable.adapters.dapr.audit import DaprAuditLog
from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.operations import Delete, Upsert
from doable.domain.audit import AuditEntry
from doable.domain.events import EventType, TaskEvent
from doable.domain.task import Priority, Task
from doable.platform import topology
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import sidecar_client

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def story(prefix: str = "") -> list[TaskEvent]:
    """Three tasks of ann and one of bob, created and then changed, interleaved: 72 events, so
    ann's entries fill more than one 64-entry bucket."""
    tasks = {
        (u, n): Task(user_id=prefix + u, task_id=n, title=f"{u} {n}", created_at=NOW, updated_at=NOW)
        for u, n in (("ann", 1), ("ann", 2), ("ann", 3), ("bob", 1))
    }
    events: list[TaskEvent] = []
    for step in range(18):
        for key, task in tasks.items():
            at = NOW + timedelta(minutes=step)
            if step == 0:
                kind = EventType.CREATED
            else:
                kind = EventType.UPDATED
                # Alternate the field that changes, so each entry's "changed" depends on its predecessor.
                task = (
                    task.evolve(title=f"{task.title}!")
                    if step % 2
                    else task.evolve(priority=Priority.HIGH if step % 4 else Priority.LOW)
                )
                tasks[key] = task
            events.append(TaskEvent.of(kind, task, at=at, trace_id=None, actor="user"))
    return events


async def history(log: DaprAuditLog, user: str) -> list[AuditEntry]:
    return await log.history(user, task_id=None, limit=500, before_id=None)


def seen(entries: Sequence[AuditEntry | None]) -> list[dict[str, Any]]:
    """What a reader of the history sees, whoever the user and whatever the event ids."""
    return [
        {**e.model_dump(exclude={"event_id", "user_id", "task_data"}), "task": {**e.task_data, "user_id": None}}
        for e in entries
        if e is not None
    ]


async def one_by_one(log: DaprAuditLog, events: list[TaskEvent]) -> None:
    for event in events:
        previous = await log.latest(event.user_id, event.task_id)
        await log.append(AuditEntry.of(event, previous.task_data if previous else None))


@pytest.fixture
async def client(double: DaprDouble) -> AsyncIterator[DaprClient]:
    client = sidecar_client(double, topology.WORKER_APP_IDS["audit"])
    yield client
    await client.aclose()


async def test_a_batch_gives_the_same_history_as_one_event_at_a_time_and_a_redelivery_adds_nothing(
    client: DaprClient,
) -> None:
    batched = single = DaprAuditLog(client, topology.STATE_STORE)
    events = story()
    # The same story for other users, one event at a time (the path without `record_events`).
    await one_by_one(single, story("single-"))
    # Bulks as a subscription delivers them, the second overlapping the first (a partial redelivery).
    assert await batched.record_events(events[:40]) == [e.event_id for e in events[:40]]
    assert await batched.record_events(events[30:]) == [e.event_id for e in events[40:]]
    for user in ("ann", "bob"):
        mine, reference = await history(batched, user), await history(single, f"single-{user}")
        assert seen(mine) == seen(reference)
        assert len(mine) == (54 if user == "ann" else 18)
        assert {e.changed for e in mine if e.event_type is EventType.UPDATED} == {("title",), ("priority",)}
    assert seen([await batched.latest("ann", 2)]) == seen([await single.latest("single-ann", 2)]) != []
    story_of_2 = await batched.history("ann", task_id=2, limit=5, before_id=None)
    assert [e.task_id for e in story_of_2] == [2] * 5 and story_of_2 == sorted(story_of_2, key=lambda e: -(e.id or 0))

    before = await history(batched, "ann")
    assert await batched.record_events(events) == []  # the whole bulk again
    assert await batched.record_events(events[5:6] * 2) == []
    assert await history(batched, "ann") == before


async def test_a_batch_that_loses_a_race_to_a_concurrent_writer_is_retried_and_both_are_kept(
    client: DaprClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_client = client
    log = DaprAuditLog(batch_client, topology.STATE_STORE)
    events = story()
    created, later = events[:4], [e for e in events[4:12] if e.user_id == "ann"]
    await log.record_events(created)
    rival = events[12]  # ann's task 1, next change: appended by another worker in the middle of our batch
    assert (rival.user_id, rival.task_id) == ("ann", 1)
    commits: list[int] = []
    transact = batch_client.transact

    async def racing(store: str, ops: list[Upsert | Delete]) -> None:
        commits.append(len(ops))
        if len(commits) == 1:  # our first commit: the rival's commits first (through this same patch)
            assert await DaprAuditLog(batch_client, topology.STATE_STORE).append(AuditEntry.of(rival, None))
        await transact(store, ops)

    monkeypatch.setattr(batch_client, "transact", racing)
    recorded = await log.record_events(later)
    monkeypatch.undo()

    assert recorded == [e.event_id for e in later]
    assert len(commits) == 3  # ours (a conflict), the rival's, ours again on fresh reads
    entries = {e.event_id: e for e in await history(log, "ann")}
    assert sorted(e.id or 0 for e in entries.values()) == list(range(1, 3 + 1 + len(later) + 1))
    # Ours come after the rival's entry, and task 1's next entry is chained from the rival's data.
    assert all((entries[e.event_id].id or 0) > (entries[rival.event_id].id or 0) for e in later)
    next_of_1 = next(e for e in later if e.task_id == 1)
    assert entries[next_of_1.event_id].changed == AuditEntry.of(next_of_1, rival.task_data).changed != ()
