"""Conversations with a scripted model (agents.testing): the real agent loop, the real MCP tools
over streamable HTTP, the real Store, and the ChatKit protocol over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agents.testing import ModelStep, assistant_message, function_call
from agents.testing.model import ModelCall

from doable.bootstrap import Runtime
from doable.usecases.inputs import ListRequest, NewTask
from tests.chat.conftest import ChatKitClient, ScriptInstaller


def tool_output(call: ModelCall) -> Any:
    """The last tool result the model was given, as JSON."""
    outputs = [i for i in call.input if isinstance(i, dict) and i.get("type") == "function_call_output"]
    output = outputs[-1]["output"]
    return json.loads(output) if isinstance(output, str) else output


def find_id(call: ModelCall, title: str) -> int:
    return next(t["id"] for t in tool_output(call)["tasks"] if t["title"] == title)


async def titles(runtime: Runtime, user: str = "alice", status: str = "all") -> list[str]:
    page, _ = await runtime.service.list(user, ListRequest(status=status, sort="title"))  # type: ignore[arg-type]
    return [t.title for t in page.tasks]


async def test_buy_milk_tomorrow_at_9_is_added_in_the_users_timezone(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    await runtime.service.set_timezone("alice", "Europe/Berlin")
    model = script(
        [
            [
                function_call(
                    "add_task", {"title": "Buy milk", "due": "2026-11-27T09:00", "priority": "high"}, call_id="c1"
                )
            ],
            [assistant_message("Added 'Buy milk' for tomorrow at 09:00, high priority.", item_id="m1")],
        ]
    )

    turn = await chatkit_as("alice").create("add buy milk tomorrow at 9 with high priority")

    # The agent knew the user's date, time and timezone (the clock says 12:00 UTC).
    instructions = model.calls[0].system_instructions or ""
    assert "Thursday, 2026-11-26, 13:00 in the user's timezone, Europe/Berlin (UTC+01:00)" in instructions
    assert "Tomorrow is Friday, 2026-11-27" in instructions
    # The task exists, due at 09:00 Berlin time.
    page, _ = await runtime.service.list("alice", ListRequest())
    [task] = page.tasks
    assert (task.title, task.priority.value) == ("Buy milk", "high")
    assert task.due_at == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert tool_output(model.calls[1])["task"]["due"] == "2026-11-27T09:00:00+01:00"
    # The UI saw progress while the tool ran, then the confirmation, and the thread got a title.
    assert turn.progress == ["Adding 'Buy milk'…"]
    assert turn.replies == ["Added 'Buy milk' for tomorrow at 09:00, high priority."]
    assert turn.of("thread.updated")[-1]["thread"]["title"] == "add buy milk tomorrow at 9 with high priority"
    model.assert_complete()


async def test_the_model_sees_the_task_tools_but_no_user_id(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    model = script([[assistant_message("Hi! What should I add?", item_id="m1")]])

    await chatkit_as("alice").create("hello")

    tools = {t.name: t for t in model.calls[0].tools}
    assert {"add_task", "list_tasks", "complete_task", "delete_task", "update_task"} <= tools.keys()
    for tool in tools.values():
        schema = getattr(tool, "params_json_schema", {})
        assert "user_id" not in schema.get("properties", {}), tool.name


async def test_listing_pending_tasks_uses_the_filter_and_shows_a_list(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    for title in ("Buy milk", "Call mom", "Pay bills"):
        await runtime.service.add("alice", NewTask(title=title))
    await runtime.service.complete("alice", 2)

    def answer(call: ModelCall) -> Any:
        lines = [f"#{t['id']} {t['title']}" for t in tool_output(call)["tasks"]]
        return [assistant_message("Pending:\n" + "\n".join(lines), item_id="m1")]

    script([[function_call("list_tasks", {"status": "pending"}, call_id="c1")], ModelStep.respond(answer)])

    turn = await chatkit_as("alice").create("What's pending?")

    assert turn.progress == ["Looking at your tasks…"]
    assert turn.replies == ["Pending:\n#3 Pay bills\n#1 Buy milk"]
    [widget] = [e["item"] for e in turn.of("thread.item.done") if e["item"]["type"] == "widget"]
    assert [row["key"] for row in widget["widget"]["children"]] == ["task-3", "task-1"]
    assert widget["copy_text"] == "#3 Pay bills\n#1 Buy milk"


async def test_the_lists_done_button_completes_the_task_through_the_service(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    await runtime.service.add("alice", NewTask(title="Buy milk"))
    script([[function_call("list_tasks", {}, call_id="c1")], [assistant_message("#1 Buy milk", item_id="m1")]])
    alice = chatkit_as("alice")
    turn = await alice.create("show my tasks")
    [widget] = [e["item"] for e in turn.of("thread.item.done") if e["item"]["type"] == "widget"]
    button = widget["widget"]["children"][0]["children"][1]

    clicked = await alice.stream(
        {
            "type": "threads.custom_action",
            "params": {"thread_id": turn.thread_id, "item_id": widget["id"], "action": button["onClickAction"]},
        }
    )

    assert await titles(runtime, status="completed") == ["Buy milk"]
    [replaced] = clicked.of("thread.item.replaced")
    assert replaced["item"]["widget"]["children"][0]["children"][1]["type"] == "Badge"
    assert replaced["item"]["copy_text"] == "#1 Buy milk (done)"
    # Saved as redrawn; the note for the agent stays hidden from the UI.
    items = (await alice.items(turn.thread_id, order="asc"))["data"]
    assert [i["type"] for i in items] == ["user_message", "assistant_message", "widget"]
    assert items[2]["copy_text"] == "#1 Buy milk (done)"


async def test_completing_by_title_lists_first_then_completes_that_id(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    for title in ("Walk the dog", "Buy milk"):
        await runtime.service.add("alice", NewTask(title=title))
    model = script(
        [
            [function_call("list_tasks", {"search": "milk"}, call_id="c1")],
            ModelStep.respond(
                lambda call: [function_call("complete_task", {"task_id": find_id(call, "Buy milk")}, call_id="c2")]
            ),
            [assistant_message("Done: 'Buy milk' is complete.", item_id="m1")],
        ]
    )

    turn = await chatkit_as("alice").create("I bought the milk")

    assert turn.progress == ["Searching your tasks for 'milk'…", "Completing task 2…"]
    assert await titles(runtime, status="completed") == ["Buy milk"]
    assert await titles(runtime, status="pending") == ["Walk the dog"]
    assert tool_output(model.calls[2])["status"] == "completed"
    assert turn.replies == ["Done: 'Buy milk' is complete."]


async def test_deleting_a_task(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    for title in ("Old task", "Keep me"):
        await runtime.service.add("alice", NewTask(title=title))
    script(
        [
            [function_call("list_tasks", {"search": "old task"}, call_id="c1")],
            ModelStep.respond(
                lambda call: [function_call("delete_task", {"task_id": find_id(call, "Old task")}, call_id="c2")]
            ),
            [assistant_message("Deleted 'Old task'.", item_id="m1")],
        ]
    )

    turn = await chatkit_as("alice").create("delete the old task")

    assert await titles(runtime) == ["Keep me"]
    assert turn.progress[-1] == "Deleting task 1…"
    assert turn.replies == ["Deleted 'Old task'."]


async def test_updating_a_task(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    await runtime.service.add("alice", NewTask(title="Call mom"))
    script(
        [
            [function_call("update_task", {"task_id": 1, "title": "Call mom tonight"}, call_id="c1")],
            [assistant_message("Renamed task 1 to 'Call mom tonight'.", item_id="m1")],
        ]
    )

    turn = await chatkit_as("alice").create("Change task 1 to 'Call mom tonight'")

    assert await titles(runtime) == ["Call mom tonight"]
    assert turn.progress == ["Updating task 1…"]


async def test_an_ambiguous_request_is_answered_with_a_question_then_resolved(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient], runtime: Runtime
) -> None:
    """Two meetings: the agent lists and asks; the next turn (with the question in its history) acts."""
    for title in ("Team meeting", "Meeting notes"):
        await runtime.service.add("alice", NewTask(title=title))

    def ask(call: ModelCall) -> Any:
        matches = ", ".join(f"#{t['id']} {t['title']}" for t in tool_output(call)["tasks"])
        return [assistant_message(f"Two tasks match: {matches}. Which one should I delete?", item_id="m1")]

    model = script(
        [
            [function_call("list_tasks", {"search": "meeting"}, call_id="c1")],
            ModelStep.respond(ask),
            [function_call("delete_task", {"task_id": 1}, call_id="c2")],
            [assistant_message("Deleted 'Team meeting'.", item_id="m2")],
        ]
    )
    alice = chatkit_as("alice")

    first = await alice.create("delete the meeting task")

    assert "Which one" in first.replies[0]
    assert await titles(runtime) == ["Meeting notes", "Team meeting"]
    assert "do not pick one" in " ".join((model.calls[0].system_instructions or "").split())

    second = await alice.say(first.thread_id, "the team one")

    history = model.calls[2].input
    texts = [json.dumps(item) for item in history]
    assert any("delete the meeting task" in t for t in texts)
    assert any("Which one should I delete?" in t for t in texts)
    assert await titles(runtime) == ["Meeting notes"]
    assert second.replies == ["Deleted 'Team meeting'."]


async def test_a_tool_error_reaches_the_model_which_explains_it(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    model = script(
        [
            [function_call("complete_task", {"task_id": 99}, call_id="c1")],
            [assistant_message("I couldn't find task 99.", item_id="m1")],
        ]
    )

    turn = await chatkit_as("alice").create("complete task 99")

    assert "not_found: task 99 not found" in json.dumps(model.calls[1].input[-1])
    assert turn.replies == ["I couldn't find task 99."] and not turn.errors


async def test_every_answer_is_kept_even_when_the_model_reuses_message_ids(
    script: ScriptInstaller, chatkit_as: Callable[[str], ChatKitClient]
) -> None:
    """Chat Completions providers give every message the same id; each answer must stay its own item."""
    script([[assistant_message("One.", item_id="__fake_id__")], [assistant_message("Two.", item_id="__fake_id__")]])
    alice = chatkit_as("alice")

    first = await alice.create("one")
    await alice.say(first.thread_id, "two")

    items = (await alice.items(first.thread_id, order="asc"))["data"]
    assert [(i["type"], i["content"][0]["text"]) for i in items] == [
        ("user_message", "one"),
        ("assistant_message", "One."),
        ("user_message", "two"),
        ("assistant_message", "Two."),
    ]
    assert len({i["id"] for i in items}) == 4 and "__fake_id__" not in {i["id"] for i in items}
