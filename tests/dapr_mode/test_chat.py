"""Chat in Dapr mode: the ChatKit Store over Dapr state passes the SQL store's tests, and a
conversation (scripted model, real agent loop and MCP tools, ChatKit over HTTP) survives a new
process because its threads live in the state store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from agents.testing import assistant_message, function_call

from agent.context import ChatContext
from agent.dapr_store import DaprChatStore, threads_key
from doable.domain.clock import ManualClock
from doable.platform import topology
from doable.platform.settings import Settings
from tests.chat.conftest import serving
from tests.chat.test_store import (  # noqa: F401  (the SQL store's behaviour, asserted again over Dapr state)
    test_another_users_threads_are_not_found,
    test_deleting_a_thread_deletes_its_items,
    test_generated_ids_are_long_enough_to_be_global_keys,
    test_items_keep_insertion_order_and_page_both_ways,
    test_saving_a_thread_again_updates_its_title_in_place,
    test_saving_an_existing_item_replaces_it_where_it_stands,
    test_threads_list_newest_first_in_pages,
    thread,
    user_message,
)
from tests.conftest import auth
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import sidecar_client

ALICE = ChatContext(user_id="alice")


@pytest.fixture
async def store(double: DaprDouble, clock: ManualClock) -> AsyncIterator[DaprChatStore]:
    client = sidecar_client(double, topology.API_APP_ID)
    try:
        yield DaprChatStore(client, topology.STATE_STORE, clock)
    finally:
        await client.aclose()


async def test_threads_survive_a_new_client(store: DaprChatStore, double: DaprDouble, clock: ManualClock) -> None:
    await store.save_thread(thread("thr_a", "kept"), ALICE)
    await store.add_thread_item("thr_a", user_message("msg_1", "thr_a", "hello"), ALICE)
    again = sidecar_client(double, topology.API_APP_ID)
    try:
        fresh = DaprChatStore(again, topology.STATE_STORE, clock)
        assert (await fresh.load_thread("thr_a", ALICE)).title == "kept"
        assert [i.id for i in (await fresh.load_thread_items("thr_a", None, 10, "asc", ALICE)).data] == ["msg_1"]
    finally:
        await again.aclose()


async def test_a_conversation_lives_in_dapr_state_and_resumes_in_a_new_process(
    dapr_settings: Settings, sidecar_url: str, double: DaprDouble, clock: ManualClock, token_for: Callable[..., str]
) -> None:
    settings = dapr_settings.model_copy(
        update={"dapr_http_endpoint": sidecar_url, "openai_api_key": None, "openai_base_url": None}
    )
    token = token_for("alice")
    async with serving(settings, clock) as first:
        assert isinstance(first.runtime.chat_store(), DaprChatStore)
        first.script(
            [
                [function_call("add_task", {"title": "Buy milk", "priority": "high"}, call_id="c1")],
                [assistant_message("Added 'Buy milk' (high priority).", item_id="m1")],
            ]
        )
        opened = await first.chatkit(token).create("Add buy milk, high priority")
        assert opened.replies == ["Added 'Buy milk' (high priority)."]
        thread_id = opened.thread_id

    api = sidecar_client(double, topology.API_APP_ID)
    try:
        index = await api.get_state(topology.STATE_STORE, threads_key("alice"))
    finally:
        await api.aclose()
    assert index is not None and index.value["order"] == [thread_id]

    async with serving(settings, clock) as second:
        alice = second.chatkit(token)
        assert [t["id"] for t in (await alice.threads())["data"]] == [thread_id]
        items = (await alice.items(thread_id, order="asc", limit=50))["data"]
        assert [i["type"] for i in items] == ["user_message", "assistant_message"]
        second.script([[assistant_message("You have 1 task: Buy milk.", item_id="m2")]])
        response = await second.http.post(
            "/api/alice/chat", json={"conversation_id": thread_id, "message": "what's on?"}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        assert response.json()["response"] == "You have 1 task: Buy milk."
        assert (await second.chatkit(token_for("bob")).threads())["data"] == []
