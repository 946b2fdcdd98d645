"""The Dapr state adapters' batch methods (issue 16), which the batch-first workers use when a
bulk arrives: each gives what its one-at-a-time form gives, in a few bulk reads and one
transaction, and a repeated batch (a redelivered bulk) changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from doable.adapters.dapr.inbox import DaprInbox
from doable.adapters.dapr.invocation import DaprTaskLookup
from doable.adapters.dapr.messaging import DaprJobScheduler
from doable.adapters.dapr.reminders import DaprReminderLedger
from doable.bootstrap import Runtime
from doable.domain.notifications import NewNotification
from doable.domain.reminders import ScheduledReminder
from doable.platform import topology
from doable.ports.messages import Job
from doable.usecases.inputs import NewTask
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import sidecar_client

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def note(user: str, source: str) -> NewNotification:
    return NewNotification(
        user_id=user, source_id=source, kind="reminder", task_id=1, title=f"for {source}", data={}, created_at=NOW
    )


async def test_a_batch_of_notifications_makes_one_per_source_and_a_repeat_makes_none(double: DaprDouble) -> None:
    client = sidecar_client(double, topology.WORKER_APP_IDS["notifications"])
    inbox = DaprInbox(client, topology.STATE_STORE)
    try:
        first = await inbox.add_many([note("ann", "e1"), note("bob", "e2"), note("ann", "e1"), note("ann", "e3")])
        assert [(n.user_id, n.id, created) for n, created in first] == [
            ("ann", 1, True), ("bob", 1, True), ("ann", 1, False), ("ann", 2, True),
        ]  # fmt: skip
        again = await inbox.add_many([note("ann", "e3"), note("ann", "e1")])
        assert [(n.id, created) for n, created in again] == [(2, False), (1, False)]
        assert [n.title for n in await inbox.recent("ann", unread_only=True, limit=10)] == ["for e3", "for e1"]
        assert await inbox.unread_count("ann") == 2 and await inbox.unread_count("bob") == 1
        assert await inbox.webhooks_for(["ann", "bob"]) == {}
    finally:
        await client.aclose()


async def test_the_ledger_batch_methods_agree_with_their_one_at_a_time_forms(double: DaprDouble) -> None:
    client = sidecar_client(double, topology.WORKER_APP_IDS["reminders"])
    ledger = DaprReminderLedger(client, topology.STATE_STORE)
    reminders = [
        ScheduledReminder(f"r-{t}-{k}", "ann", t, f"k{k}", NOW + timedelta(minutes=t * 10 + k))
        for t in (1, 2)
        for k in (1, 2)
    ]
    try:
        await ledger.put_many(reminders)
        await ledger.put_many(reminders)  # a repeat changes nothing
        grouped = await ledger.for_tasks([("ann", 1), ("ann", 2), ("ann", 3)])
        assert grouped == {("ann", t): await ledger.for_task("ann", t) for t in (1, 2)}
        assert sorted(grouped[("ann", 1)]) == ["r-1-1", "r-1-2"]
        assert await ledger.get_many(["r-2-1", "nope"]) == {"r-2-1": reminders[2]}
        await ledger.finish(reminders[1], "sent", NOW)
        assert await ledger.finished_many(reminders) == {"r-1-2"}
        overdue = await ledger.overdue(fired_before=NOW + timedelta(hours=1), lease_expired_before=NOW, limit=10)
        assert sorted(r.job_name for r in overdue) == ["r-1-1", "r-2-1", "r-2-2"]
    finally:
        await client.aclose()


async def test_a_batch_lookup_gives_the_tasks_that_exist_and_leaves_out_the_others(
    app: FastAPI, runtime: Runtime, double: DaprDouble
) -> None:
    for title in ("one", "two"):
        await runtime.service.add("ann", NewTask(title=title))
    client = sidecar_client(double, topology.WORKER_APP_IDS["reminders"])
    try:
        found = await DaprTaskLookup(client).get_many([("ann", 2), ("ann", 9), ("bob", 1), ("ann", 1)])
    finally:
        await client.aclose()
    assert {k: t.title for k, t in found.items()} == {("ann", 2): "two", ("ann", 1): "one"}


async def test_firings_are_claimed_finished_and_released_together_and_once(double: DaprDouble) -> None:
    client = sidecar_client(double, topology.WORKER_APP_IDS["reminders"])
    ledger = DaprReminderLedger(client, topology.STATE_STORE)
    reminders = [ScheduledReminder(f"f-{n}", "ann", n, "k", NOW + timedelta(minutes=n)) for n in (1, 2, 3)]
    lease = NOW - timedelta(minutes=2)
    try:
        await ledger.put_many(reminders)
        assert await ledger.claim(reminders[0], now=NOW, lease_expired_before=lease)  # another claimer
        assert await ledger.claim_many(reminders, now=NOW, lease_expired_before=lease) == {"f-2", "f-3"}
        assert await ledger.claim_many(reminders, now=NOW, lease_expired_before=lease) == set()
        await ledger.release_many(reminders[1:2])
        await ledger.finish_many(reminders[2:], state="sent", at=NOW)
        assert await ledger.finished_many(reminders) == {"f-3"}
        # Released: claimable again at once; the claim still held is not, until its lease ends.
        assert await ledger.claim_many(reminders, now=NOW, lease_expired_before=lease) == {"f-2"}
        later = NOW + timedelta(minutes=5)
        assert await ledger.claim_many(reminders, now=later, lease_expired_before=later) == {"f-1", "f-2"}
    finally:
        await client.aclose()


async def test_a_batch_of_jobs_is_scheduled_and_cancelled_whole(double: DaprDouble) -> None:
    client = sidecar_client(double, topology.WORKER_APP_IDS["reminders"])
    jobs = DaprJobScheduler(client)
    batch = [Job(name=f"j-{n}", due_at=NOW + timedelta(days=1, minutes=n), data={"n": n}) for n in range(40)]
    try:
        await jobs.schedule_many(batch)
        assert sorted(j.name for j in await double.jobs(topology.WORKER_APP_IDS["reminders"])) == sorted(
            b.name for b in batch
        )
        await jobs.cancel_many([b.name for b in batch[:30]])
        left = await double.jobs(topology.WORKER_APP_IDS["reminders"])
        assert sorted(j.name for j in left) == sorted(b.name for b in batch[30:])
    finally:
        await client.aclose()
