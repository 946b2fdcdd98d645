"""Next occurrences created for a batch of completions (issue 16): one unit of work for the batch,
on every storage adapter (SQLite, PostgreSQL, Dapr state through the sidecar double), with the
guarantees of one at a time: one successor per series and date, however often a completion comes
in the batch or later; a completion that cannot be handled is settled alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doable.adapters.embedded.relay import CommitSignal
from doable.domain.clock import ManualClock
from doable.domain.events import EventType, TaskEvent
from doable.domain.query import SortField, Status
from doable.domain.task import Task
from doable.ports import UnitOfWork, UnitOfWorkFactory
from doable.ports.messages import Message, Outcome
from doable.usecases.inputs import ListRequest, NewTask
from doable.usecases.service import Limits, TaskService
from tests.contract.conftest import Store, store  # noqa: F401  (the adapters' fixture)
from workers.recurrence import Recurrence, ServiceOccurrences

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class CountingCommits:
    """A unit-of-work factory that counts the write units of work that committed (the relay's own
    commit signal, listened to)."""

    def __init__(self, inner: UnitOfWorkFactory) -> None:
        self.commits = 0
        self._signal = CommitSignal(inner)
        self._signal.connect(self._count)

    def _count(self) -> None:
        self.commits += 1

    def __call__(self, *, write: bool = True, lookup: bool = False) -> UnitOfWork:
        return self._signal(write=write, lookup=lookup)


async def _completed_series(service: TaskService, clock: ManualClock, users: list[str], per_user: int) -> list[Task]:
    """Each user's `per_user` daily series, each occurrence completed (as its event recorded it)."""
    clock.set(NOON)
    done: list[Task] = []
    for user in users:
        for i in range(per_user):
            task = await service.add(
                user, NewTask(title=f"Repeat {i}", due=f"2026-11-{27 + i}T09:00", recurrence="daily")
            )
            done.append(await service.complete(user, task.task_id))
    return done


async def _all(service: TaskService, users: list[str]) -> dict[str, list[Task]]:
    request = ListRequest(status=Status.ALL, sort=SortField.DUE, limit=200)
    return {u: (await service.list(u, request))[0].tasks for u in users}


async def test_a_batch_of_completions_makes_one_successor_each_in_one_unit_of_work(
    store: Store,  # noqa: F811
) -> None:
    clock = ManualClock(NOON)
    counted = CountingCommits(store.uow)
    service = TaskService(counted, clock)
    users = ["ann", "bob"]
    done = await _completed_series(service, clock, users, per_user=3)
    before = {u: len(ts) for u, ts in (await _all(service, users)).items()}
    counted.commits = 0

    # Each completion twice in the batch, the repeat right behind it or at the end.
    batch = [*done[:3], done[0], *done[3:], *done]
    made = await service.create_next_occurrences(batch)

    assert counted.commits == 1  # the whole batch in one unit of work (one transaction)
    by_completion = dict(zip((t.task_id for t in batch), made, strict=True))
    for original, successor in zip(batch, made, strict=True):
        assert successor is not None
        assert successor.series_id == original.series_id
        assert successor.due_at == original.due_at + timedelta(days=1)  # type: ignore[operator]
        assert successor.task_id == by_completion[original.task_id].task_id  # type: ignore[union-attr]
    after = await _all(service, users)
    for user in users:
        assert len(after[user]) == before[user] + 3  # one successor per series and date
        assert len({t.task_id for t in after[user]}) == len(after[user])

    # The batch redelivered (a crash before it was acknowledged): the same successors, none new.
    again = await service.create_next_occurrences(batch)
    assert [t.task_id for t in again if t] == [t.task_id for t in made if t]
    assert {u: len(ts) for u, ts in (await _all(service, users)).items()} == {u: len(after[u]) for u in users}
    # And one by one after it: still the same.
    assert (await service.create_next_occurrence(done[4])) == made[batch.index(done[4])]


def _completed_event(task: Task, clock: ManualClock) -> Message:
    event = TaskEvent.of(EventType.COMPLETED, task, at=clock.now(), trace_id=None)
    return Message(id=event.event_id, topic="task-events", data=event.model_dump(mode="json"))


async def test_a_completion_that_fails_in_a_batch_is_settled_alone_and_the_others_go_through(
    store: Store,  # noqa: F811
) -> None:
    clock = ManualClock(NOON)
    # 4 tasks each: full for a user whose completion would make a fifth.
    service = TaskService(store.uow, clock, limits=Limits(tasks_per_user=4))
    full = await _completed_series(service, clock, ["full"], per_user=4)
    room = await _completed_series(service, clock, ["room"], per_user=2)
    recurrence = Recurrence(ServiceOccurrences(service))
    messages = [_completed_event(room[0], clock), _completed_event(full[0], clock), _completed_event(room[1], clock)]
    messages.append(Message(id="not-an-event", topic="task-events", data={"event_type": "completed"}))

    outcomes = await _settle(recurrence, messages)

    # The batch's unit of work kept nothing; handled one by one, the full user's completion is
    # dropped (dead-lettered by the bus: the limit never heals by retrying), the others' made.
    assert outcomes == [Outcome.SUCCESS, Outcome.DROP, Outcome.SUCCESS, Outcome.DROP]
    after = await _all(service, ["full", "room"])
    assert len(after["full"]) == 4
    assert len(after["room"]) == 4
    # Redelivered, the batch changes nothing more.
    assert await _settle(recurrence, messages) == outcomes
    assert {u: len(ts) for u, ts in (await _all(service, ["full", "room"])).items()} == {"full": 4, "room": 4}


async def _settle(recurrence: Recurrence, messages: list[Message]) -> list[Outcome]:
    """As the bus does: the messages a call did not attempt (a shorter answer) are handed again."""
    outcomes: list[Outcome] = []
    while len(outcomes) < len(messages):
        answered = await recurrence.on_task_events(messages[len(outcomes) :])
        assert answered and Outcome.RETRY not in answered
        outcomes += answered
    return outcomes
