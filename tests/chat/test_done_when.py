"""The issue's "done when": a ChatKit client holds a multi-turn conversation that adds, lists,
completes and deletes tasks through the MCP tools; it survives a restart; the spec endpoint works."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agents.testing import ModelStep, assistant_message, function_call
from agents.testing.model import ModelCall

from doable.domain.clock import ManualClock
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest
from tests.chat.conftest import serving
from tests.chat.test_conversations import find_id, tool_output
from tests.conftest import auth


def said(call: ModelCall) -> list[str]:
    """The texts of the conversation the model was given (user and assistant turns)."""
    texts = []
    for item in call.input:
        if isinstance(item, dict) and item.get("type", "message") == "message":
            content = item.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            texts.append("".join(str(p.get("text", "")) for p in parts if isinstance(p, dict)))
    return texts


async def test_a_conversation_manages_tasks_and_survives_a_restart(
    settings: Settings, clock: ManualClock, token_for: Callable[..., str]
) -> None:
    token = token_for("alice")

    async with serving(settings, clock) as first:
        alice = first.chatkit(token)
        first.script(
            [
                [function_call("add_task", {"title": "Buy milk", "priority": "high"}, call_id="c1")],
                [assistant_message("Added 'Buy milk' (high priority).", item_id="m1")],
                [function_call("add_task", {"title": "Walk the dog"}, call_id="c2")],
                [assistant_message("Added 'Walk the dog'.", item_id="m2")],
                [function_call("list_tasks", {"status": "pending"}, call_id="c3")],
                [assistant_message("#1 Buy milk (high)\n#2 Walk the dog", item_id="m3")],
                [function_call("complete_task", {"task_id": 1}, call_id="c4")],
                [assistant_message("Marked 'Buy milk' as done.", item_id="m4")],
            ]
        )
        opened = await alice.create("Add buy milk, high priority")
        thread_id = opened.thread_id
        await alice.say(thread_id, "and walk the dog")
        listed = await alice.say(thread_id, "what's pending?")
        done = await alice.say(thread_id, "mark task 1 as complete")

        assert listed.replies == ["#1 Buy milk (high)\n#2 Walk the dog"]
        assert done.replies == ["Marked 'Buy milk' as done."]
        page, _ = await first.runtime.service.list("alice", ListRequest(status="pending"))  # type: ignore[arg-type]
        assert [t.title for t in page.tasks] == ["Walk the dog"]

    # A new process: nothing in memory, the same database.
    async with serving(settings, clock) as second:
        alice = second.chatkit(token)
        threads = (await alice.threads())["data"]
        assert [(t["id"], t["title"]) for t in threads] == [(thread_id, "Add buy milk, high priority")]
        items = (await alice.items(thread_id, order="asc", limit=50))["data"]
        assert [i["type"] for i in items].count("assistant_message") == 4

        model = second.script(
            [
                [function_call("list_tasks", {"search": "dog"}, call_id="c5")],
                ModelStep.respond(
                    lambda call: [
                        function_call("delete_task", {"task_id": find_id(call, "Walk the dog")}, call_id="c6")
                    ]
                ),
                [assistant_message("Deleted 'Walk the dog'.", item_id="m5")],
                [function_call("list_tasks", {"status": "all"}, call_id="c7")],
                ModelStep.respond(
                    lambda call: [
                        assistant_message(f"You have {tool_output(call)['total']} task, and it's done.", item_id="m6")
                    ]
                ),
            ]
        )
        resumed = await alice.say(thread_id, "delete the dog task")

        # The agent's input was the thread itself, read back from storage.
        history = said(model.calls[0])
        assert history[:2] == ["Add buy milk, high priority", "Added 'Buy milk' (high priority)."]
        assert history[-1] == "delete the dog task"
        assert "(A task list was shown to the user:\n#2 Walk the dog\n#1 · high priority Buy milk)" in history
        assert resumed.replies == ["Deleted 'Walk the dog'."]

        # The spec endpoint continues the same conversation.
        response = await second.http.post(
            "/api/alice/chat", json={"conversation_id": thread_id, "message": "what's left?"}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["conversation_id"] == thread_id
        assert body["response"] == "You have 1 task, and it's done."
        assert [(c["tool"], c["arguments"]) for c in body["tool_calls"]] == [("list_tasks", {"status": "all"})]
        assert [t["title"] for t in body["tool_calls"][0]["result"]["tasks"]] == ["Buy milk"]
        assert "what's left?" in json.dumps(model.calls[3].input)
        model.assert_complete()
