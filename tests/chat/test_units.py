"""The chat's small parts: model selection, instructions, titles, history trimming, progress text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    InferenceOptions,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
)
from pydantic import SecretStr

from agent.assistant import instructions_for
from agent.context import ChatContext
from agent.history import estimate_tokens, history_input
from agent.mcp_link import loopback_mcp_url
from agent.models import select_model
from agent.progress import describe
from agent.server import title_from
from agent.store import SqlChatStore
from doable.adapters.sql.engine import create_engine, migrate
from doable.domain.clock import ManualClock
from doable.platform.settings import Settings


def test_no_key_and_no_base_url_means_no_model(settings: Settings) -> None:
    assert select_model(settings) is None


async def test_an_api_key_selects_the_responses_api(settings: Settings) -> None:
    chosen = select_model(settings.model_copy(update={"openai_api_key": SecretStr("sk-test"), "model": "gpt-5.6"}))

    assert chosen is not None and isinstance(chosen.model, OpenAIResponsesModel)
    assert (chosen.label, chosen.tracing) == ("responses:gpt-5.6", False)
    assert chosen.settings.reasoning is not None  # GPT-5 models get the SDK's reasoning defaults
    await chosen.aclose()


async def test_a_base_url_selects_chat_completions_without_reasoning_settings(settings: Settings) -> None:
    chosen = select_model(
        settings.model_copy(update={"openai_base_url": "http://localhost:11434/v1", "model": "llama3.1"})
    )

    assert chosen is not None and isinstance(chosen.model, OpenAIChatCompletionsModel)
    assert chosen.label == "chat_completions:llama3.1" and chosen.settings.reasoning is None
    await chosen.aclose()


async def test_the_model_api_can_be_forced(settings: Settings) -> None:
    chosen = select_model(
        settings.model_copy(
            update={"openai_base_url": "http://vllm:8000/v1", "model_api": "responses", "model": "qwen"}
        )
    )

    assert chosen is not None and isinstance(chosen.model, OpenAIResponsesModel)
    await chosen.aclose()


async def test_tracing_needs_to_be_asked_for_and_an_openai_key(settings: Settings) -> None:
    asked = select_model(settings.model_copy(update={"openai_api_key": SecretStr("sk-test"), "openai_tracing": True}))
    local = select_model(settings.model_copy(update={"openai_base_url": "http://ollama/v1", "openai_tracing": True}))

    assert asked is not None and asked.tracing is True
    assert local is not None and local.tracing is False
    await asked.aclose()
    await local.aclose()


def test_openai_environment_variables_configure_chat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://lmstudio:1234/v1")
    monkeypatch.setenv("DOABLE_MODEL", "qwen2.5")

    s = Settings(data_dir=tmp_path)

    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-env"
    assert (s.openai_base_url, s.model) == ("http://lmstudio:1234/v1", "qwen2.5")


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Berlin", "It is Thursday, 2026-11-26, 13:00 in the user's timezone, Europe/Berlin (UTC+01:00)."),
        ("America/New_York", "It is Thursday, 2026-11-26, 07:00 in the user's timezone, America/New_York (UTC-05:00)."),
        (
            "Pacific/Kiritimati",
            "It is Friday, 2026-11-27, 02:00 in the user's timezone, Pacific/Kiritimati (UTC+14:00).",
        ),
    ],
)
def test_instructions_state_the_users_local_now(zone: str, expected: str) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).astimezone(ZoneInfo(zone))

    assert expected in instructions_for(now)


def test_instructions_resolve_tomorrow_in_the_command_table() -> None:
    text = instructions_for(datetime(2026, 12, 31, 22, 0, tzinfo=ZoneInfo("Europe/Berlin")))

    assert '"Buy milk tomorrow at 9 with high priority" | add_task title "Buy milk", due "2027-01-01T09:00"' in text
    for command in ("Show me all my tasks", "What's pending?", "Delete the meeting task", "Mark task 3 as complete"):
        assert command in text


def _message(text: str) -> UserMessageItem:
    return UserMessageItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=datetime(2026, 11, 26),
        content=[UserMessageTextContent(text=text)],
        inference_options=InferenceOptions(),
    )


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("add buy milk", "add buy milk"),
        ("  many\n  spaces\there ", "many spaces here"),
        (
            "Please add a task to renew my passport before the trip to Japan next spring",
            "Please add a task to renew my passport before the trip to…",
        ),
        ("x" * 80, "x" * 59 + "…"),
        ("", "New chat"),
    ],
)
def test_thread_titles_come_from_the_first_message(text: str, title: str) -> None:
    assert title_from(_message(text)) == title
    assert len(title_from(_message(text))) <= 60


async def test_history_keeps_the_newest_messages_within_the_budget(tmp_path: Path, clock: ManualClock) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    await migrate(engine)
    store, ctx = SqlChatStore(engine, clock), ChatContext(user_id="alice")
    thread = ThreadMetadata(id="thr_1", created_at=datetime(2026, 11, 26))
    await store.save_thread(thread, ctx)
    for n in range(30):
        await store.add_thread_item(
            "thr_1", _message(f"question {n} " + "x" * 300).model_copy(update={"id": f"u{n}"}), ctx
        )
        answer = AssistantMessageItem(
            id=f"a{n}",
            thread_id="thr_1",
            created_at=datetime(2026, 11, 26),
            content=[AssistantMessageContent(text=f"answer {n}")],
        )
        await store.add_thread_item("thr_1", answer, ctx)
    await store.add_thread_item("thr_1", _message("the newest " + "y" * 5000).model_copy(update={"id": "last"}), ctx)

    everything = await history_input(store, thread, ctx, budget_tokens=100_000)
    trimmed = await history_input(store, thread, ctx, budget_tokens=3000)
    tiny = await history_input(store, thread, ctx, budget_tokens=10)
    await engine.dispose()

    assert len(everything) == 61
    assert 2 < len(trimmed) < 61 and estimate_tokens(trimmed) <= 3000
    assert trimmed[0]["role"] == "user"  # never starts with an orphaned answer
    assert "the newest" in str(trimmed[-1]) and "answer 29" in str(trimmed[-2])
    assert len(tiny) == 1 and "the newest" in str(tiny[0])  # the new message always goes in


@pytest.mark.parametrize(
    ("tool", "args", "text"),
    [
        ("add_task", {"title": "Buy milk"}, "Adding 'Buy milk'…"),
        ("add_task", {"title": "a" * 100}, "Adding '" + "a" * 59 + "…'…"),
        ("list_tasks", {"status": "pending"}, "Looking at your tasks…"),
        ("list_tasks", {"search": "milk"}, "Searching your tasks for 'milk'…"),
        ("complete_task", {"task_id": 3}, "Completing task 3…"),
        ("delete_task", {"task_id": 2}, "Deleting task 2…"),
        ("update_task", {"task_id": 1, "title": "x"}, "Updating task 1…"),
        ("set_timezone", {"timezone": "Europe/Berlin"}, "Setting your timezone to Europe/Berlin…"),
        ("something_new", {}, "Working on it…"),
    ],
)
def test_progress_lines(tool: str, args: dict, text: str) -> None:
    assert describe(tool, args)[1] == text


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000/mcp"),
        ("0.0.0.0", "http://127.0.0.1:8000/mcp"),
        ("::", "http://[::1]:8000/mcp"),
    ],
)
def test_the_agent_calls_its_own_process_on_loopback_by_default(settings: Settings, host: str, url: str) -> None:
    assert loopback_mcp_url(settings.model_copy(update={"host": host})) == url
