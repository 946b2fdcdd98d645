"""The reminder ledger's combined writes (doable/adapters/dapr/combined_writes.py), against the
sidecar double: concurrent writes of one process over the same pending shards all land without a
conflict, finishes (which touch no shard) among them, and one write that fails in a combined
transaction fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.combined_writes import CombinedWrites, Work
from doable.adapters.dapr.documents import StateTxn
from doable.adapters.dapr.reminders import PENDING_SHARDS, DaprReminderLedger, pending_key
from doable.domain.reminders import ScheduledReminder
from doable.platform import topology
from tests.conftest import PG_DSN
from tests.dapr_double import DaprDouble

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
APP = topology.WORKER_APP_IDS["reminders"]


@pytest.fixture
async def client(pg_schema: str) -> AsyncIterator[DaprClient]:
    async with DaprDouble(app_id=APP, dsn=PG_DSN, schema=pg_schema, drop_schema_on_close=False) as double:
        sidecar = DaprClient("http://127.0.0.1:3500", transport=httpx2.ASGITransport(app=double.sidecar_app(APP)))
        try:
            yield sidecar
        finally:
            await sidecar.aclose()


async def test_concurrent_ledger_writes_over_the_same_shards_all_land(client: DaprClient) -> None:
    ledger = DaprReminderLedger(client, topology.STATE_STORE)
    batches = [
        [ScheduledReminder(f"r-{b}-{k}", f"u{b}", k, "k", NOW + timedelta(minutes=k)) for k in range(40)]
        for b in range(8)
    ]
    await asyncio.gather(*(ledger.put_many(batch) for batch in batches))
    everyone = [r for batch in batches for r in batch]
    assert set(await ledger.get_many([r.job_name for r in everyone])) == {r.job_name for r in everyone}
    # Half of them finished while the others are written again. A finish writes its firing
    # alone; the next sweep finds those firings finished and drops them from the index.
    await asyncio.gather(
        *(ledger.finish_many(batch, state="sent", at=NOW) for batch in batches[:4]),
        *(ledger.put_many(batch) for batch in batches[4:]),
    )
    assert await pending(client) == {r.job_name for r in everyone}
    overdue = await ledger.overdue(fired_before=NOW + timedelta(days=1), lease_expired_before=NOW, limit=1000)
    assert {r.job_name for r in overdue} == {r.job_name for batch in batches[4:] for r in batch}
    assert await pending(client) == {r.job_name for batch in batches[4:] for r in batch}


async def pending(client: DaprClient) -> set[str]:
    """The jobs in the ledger's pending index."""
    shards = await client.get_bulk(topology.STATE_STORE, [pending_key(n) for n in range(PENDING_SHARDS)])
    return {job for item in shards.values() for job in item.value.get("jobs", {})}


async def test_a_write_that_fails_in_a_combined_transaction_fails_alone(client: DaprClient) -> None:
    writes = CombinedWrites(client, topology.STATE_STORE)

    def setting(key: str) -> Work:
        async def work(txn: StateTxn) -> None:
            (await txn.get(key, {})).set({"written": key})

        return work

    async def failing(txn: StateTxn) -> None:
        (await txn.get("shared", {})).set({"written": "failing"})
        raise ValueError("this write cannot be made")

    results = await asyncio.gather(
        writes.write(setting("a")),
        writes.write(failing),
        writes.write(setting("b")),
        writes.write(setting("shared")),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["NoneType", "ValueError", "NoneType", "NoneType"]
    found = await client.get_bulk(topology.STATE_STORE, ["a", "b", "shared"])
    assert {k: v.value for k, v in found.items()} == {k: {"written": k} for k in ("a", "b", "shared")}
