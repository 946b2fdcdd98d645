"""A use case answers a transport with its value, the token that undoes it and the user's
calendar, all from one unit of work: presenting a result in the user's timezone costs no second
transaction, and the undo token comes with the result (no out-parameter)."""

from __future__ import annotations

from datetime import UTC, datetime

from doable.domain.clock import ManualClock
from doable.ports import UnitOfWork, UnitOfWorkFactory
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from doable.usecases.service import TaskService
from tests.contract.conftest import Store


class CountingUnits:
    """The store's unit-of-work factory, counting the units of work opened."""

    def __init__(self, inner: UnitOfWorkFactory) -> None:
        self._inner = inner
        self.opened = 0

    def __call__(self, *, write: bool = True, lookup: bool = False) -> UnitOfWork:
        self.opened += 1
        return self._inner(write=write, lookup=lookup)


async def test_each_use_case_takes_one_unit_of_work_with_the_calendar_and_undo_token(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    units = CountingUnits(store.uow)
    service = TaskService(units, clock)
    zone = await service.tasks.set_timezone("alice", "Europe/Berlin")
    assert zone.calendar.tz.key == "Europe/Berlin" and zone.undo is not None
    steps = [
        lambda: service.tasks.add("alice", NewTask(title="water plants", due="2026-11-27T09:00")),
        lambda: service.tasks.get("alice", 1),
        lambda: service.tasks.update("alice", 1, TaskChanges(title="water the plants")),
        lambda: service.tasks.complete("alice", 1),
        lambda: service.tasks.reopen("alice", 1),
        lambda: service.tasks.list("alice", ListRequest()),
        lambda: service.tasks.delete("alice", 1),
    ]
    for step in steps:
        before = units.opened
        outcome = await step()
        assert units.opened - before == 1
        assert outcome.calendar.tz.key == "Europe/Berlin" and outcome.calendar.now == clock.now()
    done = await service.tasks.add("alice", NewTask(title="again"), idempotency_key="k-1")
    repeat = await service.tasks.add("alice", NewTask(title="again"), idempotency_key="k-1")
    assert done.undo is not None and repeat.undo == done.undo and repeat.value == done.value
    undone = await service.undoer.undo("alice", done.undo)
    assert [r.status for r in undone.value.tasks] == ["deleted"] and undone.undo is not None
    preview = await service.tasks.add("alice", NewTask(title="just looking"), preview=True)
    assert preview.undo is None and preview.calendar.tz.key == "Europe/Berlin"
