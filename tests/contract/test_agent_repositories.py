"""The unit-of-work repositories behind the agent tools (occurrence history, action tokens, series
unlinking), on every storage adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from doable.domain.errors import Conflict
from doable.domain.occurrences import OccurrenceRecord, OccurrenceStatus
from doable.ports import ActionToken
from tests.contract.conftest import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def record(due_day: int, status: OccurrenceStatus, *, user: str = "alice", series: str = "alice:1") -> OccurrenceRecord:
    return OccurrenceRecord.new(
        user_id=user,
        series_id=series,
        due_at=datetime(2026, 11, due_day, 9, tzinfo=UTC),
        due_date=None,
        status=status,
        task_id=1,
        at=NOW,
    )


async def test_occurrence_records_list_latest_first_per_series_and_user(store: Store) -> None:
    mine = [
        record(21, OccurrenceStatus.COMPLETED),
        record(23, OccurrenceStatus.MISSED),
        record(22, OccurrenceStatus.SKIPPED),
    ]
    async with store.uow() as uow:
        await uow.occurrences.add(mine)
        await uow.occurrences.add([record(24, OccurrenceStatus.MISSED, series="alice:9")])
        await uow.occurrences.add([record(25, OccurrenceStatus.MISSED, user="bob", series="alice:1")])
        await uow.commit()
    async with store.uow(write=False) as uow:
        listed = await uow.occurrences.list("alice", "alice:1")
        assert [r.due_at.day for r in listed] == [23, 22, 21]
        assert listed[0] == mine[1]
        assert [r.due_at.day for r in await uow.occurrences.list("alice", "alice:1", limit=1)] == [23]
        assert await uow.occurrences.list("carol", "alice:1") == []


async def test_occurrence_records_are_removed_by_id_and_roll_back_with_the_unit(store: Store) -> None:
    kept, gone = record(21, OccurrenceStatus.COMPLETED), record(22, OccurrenceStatus.MISSED)
    async with store.uow() as uow:
        await uow.occurrences.add([kept, gone])
        await uow.commit()
    async with store.uow() as uow:
        await uow.occurrences.remove("alice", "alice:1", [gone.id, "no-such-id"])
        # Not committed: nothing changes.
    async with store.uow() as uow:
        assert len(await uow.occurrences.list("alice", "alice:1")) == 2
        await uow.occurrences.remove("alice", "alice:1", [gone.id])
        await uow.commit()
    async with store.uow(write=False) as uow:
        assert await uow.occurrences.list("alice", "alice:1") == [kept]


async def test_action_tokens_are_per_user_single_and_removable(store: Store) -> None:
    token = ActionToken("alice", "u-abc", "undo", NOW, NOW + timedelta(hours=1), {"steps": [{"kind": "task"}]})
    async with store.uow() as uow:
        await uow.tokens.put(token)
        await uow.commit()
    async with store.uow(write=False) as uow:
        assert await uow.tokens.get("alice", "u-abc") == token
        assert await uow.tokens.get("bob", "u-abc") is None
    with pytest.raises(Conflict):
        async with store.uow() as uow:
            await uow.tokens.put(token)
            await uow.commit()
    async with store.uow() as uow:
        await uow.tokens.remove("alice", "u-abc")
        await uow.commit()
    async with store.uow(write=False) as uow:
        assert await uow.tokens.get("alice", "u-abc") is None


async def test_series_link_can_be_unlinked_and_linked_again_in_one_unit(store: Store) -> None:
    after = datetime(2026, 11, 27, 9, tzinfo=UTC)
    async with store.uow() as uow:
        await uow.series.link("alice", "alice:1", after, 2, NOW)
        await uow.commit()
    async with store.uow() as uow:
        await uow.series.unlink("alice", "alice:1", after)
        assert await uow.series.successor("alice", "alice:1", after) is None
        await uow.series.link("alice", "alice:1", after, 1, NOW)
        await uow.commit()
    async with store.uow() as uow:
        assert await uow.series.successor("alice", "alice:1", after) == 1
        await uow.series.unlink("alice", "alice:1", after)
        await uow.series.unlink("alice", "alice:1", datetime(2030, 1, 1, tzinfo=UTC))  # none: no error
        await uow.commit()
    async with store.uow(write=False) as uow:
        assert await uow.series.successor("alice", "alice:1", after) is None
