"""The storage contract, through the service and directly through units of work."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from doable.domain.clock import ManualClock
from doable.domain.errors import Conflict, NotFound
from doable.domain.events import EventType, TaskEvent
from doable.domain.query import Overdue, SortField, Status, TaskFilter, TaskQuery
from doable.domain.task import Priority
from doable.usecases.inputs import ListRequest, NewTask, TaskChanges
from tests.contract.conftest import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


async def titles(store: Store, clock: ManualClock, user: str, **req: object) -> list[str]:
    page, _ = await store.service(clock).list(user, ListRequest(**req))  # type: ignore[arg-type]
    return [t.title for t in page.tasks]


async def test_ids_are_sequential_per_user_and_never_reused(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    a1 = await svc.add("alice", NewTask(title="one"))
    a2 = await svc.add("alice", NewTask(title="two"))
    b1 = await svc.add("bob", NewTask(title="bob's"))
    assert (a1.task_id, a2.task_id, b1.task_id) == (1, 2, 1)
    await svc.delete("alice", 2)
    assert (await svc.add("alice", NewTask(title="three"))).task_id == 3


async def test_concurrent_adds_never_share_an_id(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    tasks = await asyncio.gather(*(svc.add("alice", NewTask(title=f"t{i}")) for i in range(20)))
    assert sorted(t.task_id for t in tasks) == list(range(1, 21))


async def test_another_users_task_is_simply_not_found(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    task = await svc.add("alice", NewTask(title="private"))
    for action in (svc.get, svc.complete, svc.reopen, svc.delete):
        with pytest.raises(NotFound, match=f"task {task.task_id} not found"):
            await action("bob", task.task_id)
    with pytest.raises(NotFound):
        await svc.update("bob", task.task_id, TaskChanges(title="mine now"))
    assert (await svc.get("alice", task.task_id)).title == "private"
    page, _ = await svc.list("bob", ListRequest(search="private"))
    assert page.tasks == [] and page.total == 0


async def test_stale_update_is_a_conflict_and_changes_nothing(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    stale = await svc.add("alice", NewTask(title="v1"))
    await svc.update("alice", stale.task_id, TaskChanges(title="from first"))
    with pytest.raises(Conflict):
        async with store.uow() as uow:
            await uow.tasks.update(stale.evolve(title="from a stale read"))
            await uow.commit()
    with pytest.raises(Conflict):
        async with store.uow() as uow:
            await uow.tasks.remove(stale)
            await uow.commit()
    assert (await svc.get("alice", stale.task_id)).title == "from first"


async def test_concurrent_updates_lose_nothing(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    task = await svc.add("alice", NewTask(title="counter"))
    await asyncio.gather(*(svc.update("alice", task.task_id, TaskChanges(tags=[f"t{i}"])) for i in range(8)))
    final = await svc.get("alice", task.task_id)
    assert final.version == 9  # every one of the 8 updates applied, none overwritten blindly


async def test_failed_unit_of_work_leaves_no_task_and_no_event(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    await svc.add("alice", NewTask(title="kept"))
    before = await store.outbox.depth()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.uow() as uow:
            task = (await uow.tasks.get("alice", 1)).evolve(title="half written")  # type: ignore[union-attr]
            await uow.tasks.update(task)
            await uow.events.add(TaskEvent.of(EventType.UPDATED, task, at=NOW, trace_id=None))
            raise Boom
    assert (await svc.get("alice", 1)).title == "kept"
    assert await store.outbox.depth() == before


async def test_every_mutation_records_one_spec_shaped_event(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    t = await svc.add("alice", NewTask(title="Call mom", priority="high"))
    await svc.update("alice", t.task_id, TaskChanges(title="Call mom tonight"))
    await svc.complete("alice", t.task_id)
    await svc.complete("alice", t.task_id)  # already complete: nothing new
    await svc.reopen("alice", t.task_id)
    await svc.delete("alice", t.task_id)
    history = await store.outbox.history("alice", t.task_id)
    assert [e.event_type for e in reversed(history)] == ["created", "updated", "completed", "reopened", "deleted"]
    created = history[-1].model_dump(mode="json")
    assert set(created) >= {"event_type", "task_id", "task_data", "user_id", "timestamp", "event_id", "trace_id"}
    assert created["task_data"]["title"] == "Call mom" and created["user_id"] == "alice"
    assert await store.outbox.history("bob") == []
    pending = await store.outbox.pending()
    assert [r.event.event_type for r in pending] == ["created", "updated", "completed", "reopened", "deleted"]
    await store.outbox.mark_published([r.seq for r in pending[:2]])
    assert await store.outbox.depth() == 3


async def seed(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    await svc.set_timezone("alice", "Europe/Berlin")
    specs = [
        NewTask(title="Buy milk", tags=["home", "errands"], priority="high", due="2026-11-26T18:00"),
        NewTask(
            title="pay BILLS", description="electricity and Water", tags=["home"], priority="medium", due="2026-11-25"
        ),
        NewTask(title="Write report", tags=["work"], priority="high", due="2026-11-30T09:00"),
        NewTask(title="call Mom", priority="low"),
        NewTask(title="Äpfel kaufen", description="für den Kuchen", tags=["errands"], due="2026-11-26"),
        NewTask(title="Team meeting", tags=["work", "meeting"], due="2026-11-20T10:00"),
    ]
    for spec in specs:
        await svc.add("alice", spec)
    await svc.complete("alice", 6)
    await svc.add("bob", NewTask(title="Buy milk for bob", tags=["home"], priority="high"))


async def test_filters(store: Store, clock: ManualClock) -> None:
    await seed(store, clock)
    q = lambda **kw: titles(store, clock, "alice", sort="title", **kw)  # noqa: E731
    assert await q(status="completed") == ["Team meeting"]
    assert await q(status="pending", priority=["high"]) == ["Buy milk", "Write report"]
    assert await q(tags=["home"]) == ["Buy milk", "pay BILLS"]
    assert await q(tags=["home", "work"], tags_mode="any") == ["Buy milk", "pay BILLS", "Team meeting", "Write report"]
    assert await q(tags=["home", "errands"], tags_mode="all") == ["Buy milk"]
    assert await q(search="MILK") == ["Buy milk"]
    assert await q(search="water") == ["pay BILLS"]
    assert await q(search="äpfel") == ["Äpfel kaufen"]
    assert await q(search="ku") == ["Äpfel kaufen"]
    assert await q(search="100%") == []
    assert await q(due="none") == ["call Mom"]
    # Berlin: now is 13:00 on Thu 26 Nov. Overdue: the timed meeting is completed; the all-day bill (25th) is overdue.
    assert await q(due="overdue") == ["pay BILLS"]
    assert await q(due="today") == ["Buy milk", "Äpfel kaufen"]
    assert await q(due="this_week") == ["Buy milk", "pay BILLS", "Äpfel kaufen"]  # Mon 30th is next week
    assert await q(due="next_7_days") == ["Buy milk", "Write report", "Äpfel kaufen"]
    assert await q(due_after="2026-11-26", due_before="2026-11-27") == ["Buy milk", "Äpfel kaufen"]


async def test_sorts_put_missing_due_dates_last_both_ways(store: Store, clock: ManualClock) -> None:
    await seed(store, clock)
    asc = await titles(store, clock, "alice", sort="due")
    assert asc[0] == "Team meeting" and asc[-1] == "call Mom"
    desc = await titles(store, clock, "alice", sort="due", order="desc")
    assert desc[0] == "Write report" and desc[-1] == "call Mom"
    assert await titles(store, clock, "alice", sort="title") == [
        "Buy milk",
        "call Mom",
        "pay BILLS",
        "Team meeting",
        "Write report",
        "Äpfel kaufen",
    ]
    by_priority = await titles(store, clock, "alice", sort="priority")
    assert by_priority[:2] == ["Write report", "Buy milk"]  # high first, newest id first among equals


async def test_pagination_is_stable_under_concurrent_inserts(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    for i in range(10):
        await svc.add("alice", NewTask(title=f"task {i:02d}"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, _ = await svc.list("alice", ListRequest(sort="title", limit=3, cursor=cursor))
        seen += [t.title for t in page.tasks]
        assert page.total >= 10
        pages += 1
        if pages == 2:
            await svc.add("alice", NewTask(title="task 00a"))  # sorts before the cursor: not repeated
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"task {i:02d}" for i in range(10)]
    assert pages == 4


async def test_cursor_from_another_query_is_refused(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    for i in range(3):
        await svc.add("alice", NewTask(title=f"t{i}"))
    page, _ = await svc.list("alice", ListRequest(limit=1))
    assert page.next_cursor
    from doable.domain.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="cursor"):
        await svc.list("alice", ListRequest(limit=1, sort="title", cursor=page.next_cursor))
    with pytest.raises(InvalidArgument, match="cursor"):
        await svc.list("alice", ListRequest(cursor="garbage!"))


async def test_sql_matches_the_domains_reference_semantics(store: Store, clock: ManualClock) -> None:
    """Random tasks and queries: the adapter must return what TaskQuery.apply computes in memory."""
    rng = random.Random(7)
    svc = store.service(clock)
    words = ["milk", "Report", "call", "Äpfel", "review", "taxes", "gym", "plan"]
    tags = ["work", "home", "errands", "health"]
    for i in range(60):
        due = None
        if rng.random() < 0.7:
            day = NOW + timedelta(days=rng.randint(-10, 10))
            due = day.date().isoformat() if rng.random() < 0.3 else day.replace(hour=rng.randint(0, 23)).isoformat()
        await svc.add(
            "alice",
            NewTask(
                title=f"{rng.choice(words)} {rng.choice(words)} {i}",
                priority=rng.choice(list(Priority)),
                tags=rng.sample(tags, rng.randint(0, 2)),
                due=due,
            ),
        )
        if rng.random() < 0.3:
            await svc.complete("alice", i + 1)
    async with store.uow(write=False) as uow:
        everything = (await uow.tasks.list("alice", TaskQuery(limit=1000))).tasks
        assert len(everything) == 60
        for _ in range(40):
            flt = TaskFilter(
                status=rng.choice(list(Status)),
                priorities=frozenset(rng.sample(list(Priority), rng.randint(0, 2))),
                tags_any=tuple(rng.sample(tags, rng.randint(0, 2))),
                keyword=rng.choice([None, "milk", "äpfel", "re", "1"]),
                overdue=rng.choice([None, Overdue(now=NOW, today=NOW.date())]),
                due_from=rng.choice([None, NOW - timedelta(days=3)]),
            )
            query = TaskQuery(filter=flt, sort=rng.choice(list(SortField)), descending=rng.random() < 0.5, limit=7)
            expected, total = query.apply(everything)
            page = await uow.tasks.list("alice", query)
            assert [t.task_id for t in page.tasks] == [t.task_id for t in expected], query
            assert page.total == total


async def test_text_filter_matches_the_structured_filter_and_the_reference(store: Store, clock: ManualClock) -> None:
    await seed(store, clock)
    structured = await titles(store, clock, "alice", sort="title", status="pending", priority=["high"], tags=["home"])
    text = await titles(store, clock, "alice", sort="title", filter="pending & p:high & #home")
    assert structured == text == ["Buy milk"]
    assert await titles(store, clock, "alice", sort="title", filter="overdue | (#work & !done)") == [
        "pay BILLS",
        "Write report",
    ]
    assert await titles(store, clock, "alice", sort="title", filter='"milk" | due before: 2026-11-26') == [
        "Buy milk",
        "pay BILLS",
        "Team meeting",
    ]
    page, _ = await store.service(clock).list("alice", ListRequest(filter="#home | #work", status="pending", sort="due"))
    assert page.query == "pending & (#home | #work); sort: due asc"
    rng = random.Random(3)
    atoms = ["#home", "#work", "#errands", "p:high", "p:none", "overdue", "today", "done", "no_due", '"a"', "this_week"]
    svc = store.service(clock)
    for _ in range(25):
        a, b, c = rng.sample(atoms, 3)
        expr = rng.choice([f"{a} | {b} & !{c}", f"!({a} | {b}) | {c}", f"({a} | {b}) & ({c} | {a})"])
        page, cal = await svc.list("alice", ListRequest(filter=expr, limit=200))
        everything, _ = await svc.list("alice", ListRequest(limit=200))
        query = svc.build_query(ListRequest(filter=expr, limit=200), cal)
        expected, _ = query.apply(everything.tasks)
        assert [t.task_id for t in page.tasks] == [t.task_id for t in expected], expr


async def test_idempotency_keys_make_concurrent_retries_create_one_task(store: Store, clock: ManualClock) -> None:
    svc = store.service(clock)
    results = await asyncio.gather(*(svc.add("alice", NewTask(title="once"), idempotency_key="k-1") for _ in range(5)))
    assert {t.task_id for t in results} == {1}
    page, _ = await svc.list("alice", ListRequest())
    assert page.total == 1
    clock.advance(timedelta(hours=25))  # past the window the key is forgotten
    assert (await svc.add("alice", NewTask(title="once"), idempotency_key="k-1")).task_id == 2
