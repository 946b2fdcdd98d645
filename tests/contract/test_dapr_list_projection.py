"""The Dapr-state list projection (doable/adapters/dapr/state.py, docs/read-paths.md): lists read the
per-user projection chunks and only the page's tasks, and must answer exactly what the domain's
in-memory semantics answer over the buckets (the path lists took before the projection, still
used for users stored before it existed), across chunks, processes, cursors and upgrades."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from doable.adapters.dapr import tasks as dapr_tasks
from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.keys import INDEX_CHUNK, bucket_key, bucket_of, chunk_of, index_key, meta_key
from doable.adapters.dapr.operations import Upsert
from doable.adapters.dapr.state import DaprUnitOfWorkFactory
from doable.domain.query import Overdue, Position, SortField, Status, TaskFilter, TaskQuery
from doable.domain.task import Priority, Task
from doable.platform.topology import STATE_STORE
from tests.contract.conftest import Store, dapr_store

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
WORDS = ["milk", "Report", "call", "Äpfel", "review", "taxes", "gym", "plan"]
TAGS = ["work", "home", "errands", "health"]


@pytest.fixture
async def dapr(pg_schema: str) -> AsyncIterator[Store]:
    async with dapr_store(pg_schema) as store:
        yield store


def _client(store: Store) -> DaprClient:
    factory = store.uow
    assert isinstance(factory, DaprUnitOfWorkFactory)
    return factory.client


def _factory(store: Store, **options: object) -> DaprUnitOfWorkFactory:
    """Another process on the same state store: its own caches."""
    return DaprUnitOfWorkFactory(_client(store), STATE_STORE, **options)  # type: ignore[arg-type]


def _task(rng: random.Random, user: str, task_id: int) -> Task:
    due_at = due_date = None
    if rng.random() < 0.7:
        day = NOW + timedelta(days=rng.randint(-10, 10))
        if rng.random() < 0.3:
            due_date = day.date()
            due_at = datetime(due_date.year, due_date.month, due_date.day, tzinfo=UTC)
        else:
            due_at = day.replace(hour=rng.randint(0, 23))
    created = NOW - timedelta(minutes=rng.randint(0, 10_000))
    return Task(
        user_id=user,
        task_id=task_id,
        title=f"{rng.choice(WORDS)} {rng.choice(WORDS)} {task_id}",
        description=rng.choice(["", "call the bank", "Äpfel und Birnen"]),
        completed=rng.random() < 0.3,
        priority=rng.choice(list(Priority)),
        tags=tuple(rng.sample(TAGS, rng.randint(0, 2))),
        due_at=due_at,
        due_date=due_date,
        created_at=created,
        updated_at=created + timedelta(minutes=rng.randint(0, 100)),
    )


async def _seed(factory: DaprUnitOfWorkFactory, rng: random.Random, user: str, n: int) -> None:
    for start in range(0, n, 200):
        async with factory() as uow:
            for _ in range(min(200, n - start)):
                await uow.tasks.add(_task(rng, user, await uow.tasks.next_id(user)))
            await uow.commit()


def _queries(rng: random.Random, n: int) -> list[TaskQuery]:
    out = []
    for _ in range(n):
        flt = TaskFilter(
            status=rng.choice(list(Status)),
            priorities=frozenset(rng.sample(list(Priority), rng.randint(0, 2))),
            tags_any=tuple(rng.sample(TAGS, rng.randint(0, 1))),
            tags_all=tuple(rng.sample(TAGS, rng.randint(0, 1))),
            keyword=rng.choice([None, "milk", "äpfel", "re", "1", "call"]),
            overdue=rng.choice([None, Overdue(now=NOW, today=NOW.date())]),
            due_from=rng.choice([None, NOW - timedelta(days=3)]),
            due_to=rng.choice([None, NOW + timedelta(days=2)]),
            has_due=rng.choice([None, True, False]),
        )
        out.append(TaskQuery(filter=flt, sort=rng.choice(list(SortField)), descending=rng.random() < 0.5, limit=23))
    return out


async def _pages(factory: DaprUnitOfWorkFactory, user: str, query: TaskQuery) -> tuple[list[list[int]], int]:
    """Every page of `query`, following the keyset position as the service's cursor does."""
    pages: list[list[int]] = []
    totals = set()
    while True:
        async with factory(write=False) as uow:
            page = await uow.tasks.list(user, query)
        totals.add(page.total)
        pages.append([t.task_id for t in page.tasks])
        if len(page.tasks) < query.limit:
            break
        last = page.tasks[-1]
        query = TaskQuery(
            query.filter, query.sort, query.descending, query.limit, Position(query.sort_value(last), last.task_id)
        )
    assert len(totals) == 1
    return pages, totals.pop()


async def _same_as_buckets(store: Store, user: str, queries: list[TaskQuery]) -> None:
    reference = _factory(store, list_index=False)  # every bucket, TaskQuery.apply: the domain's semantics
    for query in queries:
        assert await _pages(store.uow, user, query) == await _pages(reference, user, query), query  # type: ignore[arg-type]


async def test_lists_span_chunks_and_match_the_buckets(dapr: Store) -> None:
    rng = random.Random(11)
    factory = dapr.uow
    assert isinstance(factory, DaprUnitOfWorkFactory)
    n = 2 * INDEX_CHUNK + 90
    await _seed(factory, rng, "alice", n)
    await _seed(factory, rng, "bob", 30)
    # Changes and removals in every chunk.
    async with factory() as uow:
        for task_id in rng.sample(range(1, n + 1), 40):
            task = await uow.tasks.get("alice", task_id)
            assert task is not None
            if rng.random() < 0.5:
                await uow.tasks.remove(task)
            else:
                await uow.tasks.update(task.evolve(title=f"review {task.title}", completed=not task.completed))
        await uow.commit()
    meta = await _client(dapr).get_state(STATE_STORE, meta_key("alice"))
    assert meta is not None and set(meta.value["ix"]) == {str(c) for c in range(chunk_of(n) + 1)}
    await _same_as_buckets(dapr, "alice", _queries(rng, 30))
    async with factory(write=False) as uow:
        assert (await uow.tasks.list("alice", TaskQuery(limit=200))).total == (await uow.tasks.count("alice"))
        assert {t.user_id for t in (await uow.tasks.list("bob", TaskQuery(limit=200))).tasks} == {"bob"}


async def test_a_process_sees_what_another_process_wrote(dapr: Store) -> None:
    rng = random.Random(5)
    first, second = _factory(dapr), _factory(dapr)
    await _seed(first, rng, "alice", INDEX_CHUNK + 10)
    everything = TaskQuery(sort=SortField.TITLE, descending=False, limit=200)
    keyword = TaskQuery(filter=TaskFilter(keyword="zebra"), limit=200)
    async with first(write=False) as uow:  # first caches every chunk and the pages' tasks
        before = await uow.tasks.list("alice", everything)
        assert (await uow.tasks.list("alice", keyword)).total == 0
    async with second() as uow:
        one = await uow.tasks.get("alice", before.tasks[0].task_id)
        gone = await uow.tasks.get("alice", before.tasks[1].task_id)
        assert one is not None and gone is not None
        await uow.tasks.update(one.evolve(title="Zebra crossing", description="paint"))
        await uow.tasks.remove(gone)
        await uow.tasks.add(
            _task(rng, "alice", await uow.tasks.next_id("alice")).model_copy(update={"title": "a zebra"})
        )
        await uow.commit()
    async with first(write=False) as uow:
        after = await uow.tasks.list("alice", everything)
        found = await uow.tasks.list("alice", keyword)
    assert after.total == before.total
    assert gone.task_id not in {t.task_id for t in after.tasks}
    assert {t.title for t in found.tasks} == {"a zebra", "Zebra crossing"}
    assert found.total == 2
    await _same_as_buckets(dapr, "alice", _queries(rng, 10))


async def test_a_list_sees_the_writes_of_its_own_unit_of_work(dapr: Store) -> None:
    rng = random.Random(2)
    factory = dapr.uow
    assert isinstance(factory, DaprUnitOfWorkFactory)
    await _seed(factory, rng, "alice", 50)
    query = TaskQuery(filter=TaskFilter(keyword="quokka"), limit=50)
    async with factory() as uow:
        task = await uow.tasks.get("alice", 7)
        assert task is not None
        await uow.tasks.update(task.evolve(title="Quokka"))
        page = await uow.tasks.list("alice", query)
        assert [(t.task_id, t.title) for t in page.tasks] == [(7, "Quokka")]
        # Not committed: nobody else sees it.
    async with factory(write=False) as uow:
        assert (await uow.tasks.list("alice", query)).total == 0


@pytest.mark.parametrize("batch", [16, 1], ids=["one-transaction", "in-batches"])
async def test_a_user_stored_before_the_projection_is_listed_then_upgraded_by_a_write(
    dapr: Store, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A projection of more than BUILD_BATCH chunks is written in batches before the unit of work commits.
    monkeypatch.setattr(dapr_tasks, "BUILD_BATCH", batch)
    rng = random.Random(9)
    client = _client(dapr)
    n = INDEX_CHUNK + 40
    buckets: dict[int, dict[str, object]] = {}
    for task_id in range(1, n + 1):
        buckets.setdefault(bucket_of(task_id), {})[str(task_id)] = _task(rng, "old", task_id).model_dump(mode="json")
    # The layout before the projection: buckets without revs, a meta without "ixv".
    await client.transact(
        STATE_STORE, [Upsert(bucket_key("old", b), {"tasks": t}, first_write=False) for b, t in buckets.items()]
    )
    meta = {"next_id": n, "count": n, "outbox_head": 0, "outbox_tail": 0}
    await client.transact(STATE_STORE, [Upsert(meta_key("old"), meta, first_write=False)])
    queries = _queries(rng, 12)
    await _same_as_buckets(dapr, "old", queries)  # listed from the buckets
    assert await client.get_state(STATE_STORE, index_key("old", 0)) is None
    factory = dapr.uow
    assert isinstance(factory, DaprUnitOfWorkFactory)
    async with factory() as uow:  # the first write builds the projection
        task = await uow.tasks.get("old", 3)
        assert task is not None
        await uow.tasks.update(task.evolve(title="upgraded call"))
        await uow.commit()
    stored = await client.get_state(STATE_STORE, meta_key("old"))
    assert stored is not None and stored.value["ixv"] == 1 and set(stored.value["ix"]) == {"0", "1"}
    assert await client.get_state(STATE_STORE, index_key("old", 1)) is not None
    await _same_as_buckets(dapr, "old", queries)
    async with factory(write=False) as uow:
        page = await uow.tasks.list("old", TaskQuery(filter=TaskFilter(keyword="upgraded"), limit=5))
    assert [t.task_id for t in page.tasks] == [3]
