"""The ChatKit Store over SQL: ordering, pagination, upserts, and every call scoped to its user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    InferenceOptions,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from agent.context import ChatContext
from agent.store import SqlChatStore
from doable.adapters.sql.engine import create_engine, migrate
from doable.domain.clock import ManualClock
from tests.conftest import PG_DSN

ALICE = ChatContext(user_id="alice")
BOB = ChatContext(user_id="bob")


EngineFactory = Callable[[], AsyncEngine]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_engine(request: pytest.FixtureRequest, tmp_path: Path) -> EngineFactory:
    """Fresh engines on one database (each like a process starting)."""
    if request.param == "sqlite":
        return lambda: create_engine(f"sqlite:///{tmp_path / 'chat.db'}")
    schema = request.getfixturevalue("pg_schema")
    return lambda: create_engine(PG_DSN, schema=schema)


@pytest.fixture
async def engine(new_engine: EngineFactory) -> AsyncIterator[AsyncEngine]:
    eng = new_engine()
    await migrate(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def store(engine: AsyncEngine, clock: ManualClock) -> SqlChatStore:
    return SqlChatStore(engine, clock)


def thread(thread_id: str, title: str | None = None) -> ThreadMetadata:
    return ThreadMetadata(id=thread_id, title=title, created_at=datetime(2026, 11, 26, 12, 0))


def user_message(item_id: str, thread_id: str, text: str) -> UserMessageItem:
    return UserMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=datetime(2026, 11, 26, 12, 0),
        content=[UserMessageTextContent(text=text)],
        inference_options=InferenceOptions(),
    )


def reply(item_id: str, thread_id: str, text: str) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=datetime(2026, 11, 26, 12, 0),
        content=[AssistantMessageContent(text=text)],
    )


async def test_threads_list_newest_first_in_pages(store: SqlChatStore) -> None:
    for n in range(5):
        await store.save_thread(thread(f"thr_{n}", f"chat {n}"), ALICE)

    first = await store.load_threads(2, None, "desc", ALICE)
    second = await store.load_threads(2, first.after, "desc", ALICE)
    last = await store.load_threads(2, second.after, "desc", ALICE)

    assert [t.id for t in first.data] == ["thr_4", "thr_3"] and first.has_more
    assert [t.id for t in second.data] == ["thr_2", "thr_1"] and second.has_more
    assert [t.id for t in last.data] == ["thr_0"] and not last.has_more and last.after is None
    assert [t.id for t in (await store.load_threads(10, None, "asc", ALICE)).data] == [f"thr_{n}" for n in range(5)]


async def test_saving_a_thread_again_updates_its_title_in_place(store: SqlChatStore) -> None:
    await store.save_thread(thread("thr_a"), ALICE)
    await store.save_thread(thread("thr_b"), ALICE)
    await store.save_thread(thread("thr_a", "Groceries"), ALICE)

    assert (await store.load_thread("thr_a", ALICE)).title == "Groceries"
    assert [t.id for t in (await store.load_threads(10, None, "asc", ALICE)).data] == ["thr_a", "thr_b"]


async def test_items_keep_insertion_order_and_page_both_ways(store: SqlChatStore) -> None:
    await store.save_thread(thread("thr_a"), ALICE)
    for n in range(5):
        await store.add_thread_item("thr_a", user_message(f"msg_{n}", "thr_a", f"m{n}"), ALICE)

    asc = await store.load_thread_items("thr_a", None, 3, "asc", ALICE)
    rest = await store.load_thread_items("thr_a", asc.after, 3, "asc", ALICE)
    desc = await store.load_thread_items("thr_a", None, 2, "desc", ALICE)

    assert [i.id for i in asc.data] == ["msg_0", "msg_1", "msg_2"] and asc.has_more and asc.after == "msg_2"
    assert [i.id for i in rest.data] == ["msg_3", "msg_4"] and not rest.has_more
    assert [i.id for i in desc.data] == ["msg_4", "msg_3"]


async def test_saving_an_existing_item_replaces_it_where_it_stands(store: SqlChatStore) -> None:
    await store.save_thread(thread("thr_a"), ALICE)
    await store.add_thread_item("thr_a", reply("msg_1", "thr_a", "draft"), ALICE)
    await store.add_thread_item("thr_a", user_message("msg_2", "thr_a", "next"), ALICE)
    await store.save_item("thr_a", reply("msg_1", "thr_a", "final"), ALICE)

    items = (await store.load_thread_items("thr_a", None, 10, "asc", ALICE)).data
    assert [i.id for i in items] == ["msg_1", "msg_2"]
    loaded = await store.load_item("thr_a", "msg_1", ALICE)
    assert isinstance(loaded, AssistantMessageItem) and loaded.content[0].text == "final"


async def test_another_users_threads_are_not_found(store: SqlChatStore) -> None:
    await store.save_thread(thread("thr_a", "alice's"), ALICE)
    await store.add_thread_item("thr_a", user_message("msg_1", "thr_a", "secret"), ALICE)

    with pytest.raises(NotFoundError):
        await store.load_thread("thr_a", BOB)
    with pytest.raises(NotFoundError):
        await store.load_thread_items("thr_a", None, 10, "asc", BOB)
    with pytest.raises(NotFoundError):
        await store.load_item("thr_a", "msg_1", BOB)
    with pytest.raises(NotFoundError):
        await store.add_thread_item("thr_a", user_message("msg_2", "thr_a", "hi"), BOB)
    with pytest.raises(NotFoundError):
        await store.save_item("thr_a", user_message("msg_1", "thr_a", "overwritten"), BOB)
    with pytest.raises(NotFoundError):
        await store.save_thread(thread("thr_a", "taken over"), BOB)
    with pytest.raises(NotFoundError):
        await store.delete_thread("thr_a", BOB)
    await store.delete_thread_item("thr_a", "msg_1", BOB)
    assert (await store.load_threads(10, None, "desc", BOB)).data == []

    assert (await store.load_thread("thr_a", ALICE)).title == "alice's"
    items = (await store.load_thread_items("thr_a", None, 10, "asc", ALICE)).data
    assert [(i.id, i.content[0].text) for i in items if isinstance(i, UserMessageItem)] == [("msg_1", "secret")]


async def test_deleting_a_thread_deletes_its_items(store: SqlChatStore) -> None:
    await store.save_thread(thread("thr_a"), ALICE)
    await store.add_thread_item("thr_a", user_message("msg_1", "thr_a", "hi"), ALICE)
    await store.delete_thread("thr_a", ALICE)

    with pytest.raises(NotFoundError):
        await store.load_thread("thr_a", ALICE)
    with pytest.raises(NotFoundError):
        await store.delete_thread("thr_a", ALICE)


async def test_threads_survive_a_restart(engine: AsyncEngine, new_engine: EngineFactory, clock: ManualClock) -> None:
    await SqlChatStore(engine, clock).save_thread(thread("thr_a", "kept"), ALICE)
    await SqlChatStore(engine, clock).add_thread_item("thr_a", user_message("msg_1", "thr_a", "hello"), ALICE)
    await engine.dispose()

    again = new_engine()
    try:
        store = SqlChatStore(again, clock)
        assert (await store.load_thread("thr_a", ALICE)).title == "kept"
        assert [i.id for i in (await store.load_thread_items("thr_a", None, 10, "asc", ALICE)).data] == ["msg_1"]
    finally:
        await again.dispose()


def test_generated_ids_are_long_enough_to_be_global_keys(store: SqlChatStore) -> None:
    ids = {store.generate_thread_id(ALICE) for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("thr_") and len(i) == 28 for i in ids)
    assert store.generate_item_id("message", thread("thr_a"), ALICE).startswith("msg_")
