"""The tool listing and the output-schema validators are kept across turns (agent.tool_catalog):
a turn after the first lists no tools and compiles no validator, per user, and the kept listing
still drives the SDK's and the MCP session's checks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import httpx2
import jsonschema.validators
import pytest
from agents.testing import assistant_message, function_call

from agent.mcp_link import in_process
from agent.server import DoableChatServer
from agent.tool_catalog import ToolCatalog
from tests.chat.conftest import ChatKitClient, ScriptInstaller


@pytest.fixture
def methods(app: Any, chat: DoableChatServer) -> list[str]:
    """The JSON-RPC methods the chat's MCP connections send, in order."""
    sent: list[str] = []
    inner = in_process(app)

    async def record(request: httpx2.Request) -> None:
        if request.method == "POST" and request.content:
            sent.append(str(json.loads(request.content).get("method")))

    def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
        client = inner(headers=headers, timeout=timeout, auth=auth)
        client.event_hooks["request"].append(record)
        return client

    chat.link.client_factory = factory
    return sent


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tools' output schemas the MCP client compiled into validators (their titles)."""
    found: list[str] = []
    real = jsonschema.validators.validator_for

    def counting(schema: Any, *args: Any, **kwargs: Any) -> Any:
        # Only the client session's compiles (jsonschema calls it for meta-schemas too).
        if sys._getframe(1).f_code.co_name == "_output_schema_validator":
            found.append(str(schema.get("title", "?")))
        return real(schema, *args, **kwargs)

    monkeypatch.setattr(jsonschema.validators, "validator_for", counting)
    return found


def add(n: int) -> list[Any]:
    return [
        [function_call("add_task", {"title": f"Task {n}"}, call_id=f"c{n}")],
        [assistant_message(f"Added task {n}.", item_id=f"m{n}")],
    ]


async def test_later_turns_list_no_tools_and_compile_no_validator(
    script: ScriptInstaller,
    chatkit_as: Callable[[str], ChatKitClient],
    methods: list[str],
    compiled: list[str],
) -> None:
    script(add(1) + add(2) + add(3))
    alice = chatkit_as("alice")
    first = await alice.create("add task 1")
    assert first.replies == ["Added task 1."]
    assert methods.count("tools/list") == 1
    once = len(compiled)
    assert once >= 1  # add_task's output schema

    for n in (2, 3):
        turn = await alice.say(first.thread_id, f"add task {n}")
        assert turn.replies == [f"Added task {n}."] and not turn.errors

    # Each turn still opens its own session (its own token) and calls the tool through it.
    handshakes = methods.count("server/discover") + methods.count("initialize")
    assert handshakes == 3 and methods.count("tools/call") == 3
    assert methods.count("tools/list") == 1
    assert len(compiled) == once


async def test_each_user_gets_a_listing_fetched_with_their_own_token(
    script: ScriptInstaller,
    chatkit_as: Callable[[str], ChatKitClient],
    methods: list[str],
    compiled: list[str],
) -> None:
    script(add(1) + add(2))
    await chatkit_as("alice").create("add task 1")
    await chatkit_as("bob").create("add task 2")
    assert methods.count("tools/list") == 2
    # The validator compiled in alice's session served bob's.
    assert compiled.count(compiled[0]) == 1


def test_a_listing_expires_and_the_least_recent_users_are_dropped() -> None:
    now = [0.0]
    catalog = ToolCatalog(ttl=60, max_users=2, clock=lambda: now[0])
    tools: list[Any] = []
    catalog.remember("alice", tools)
    assert catalog.listing("alice") is tools and catalog.listing("bob") is None
    # An equal listing is shared, not kept twice.
    assert catalog.remember("bob", list(tools)) is tools
    catalog.listing("alice")  # alice is now the most recent
    catalog.remember("carol", [])
    assert catalog.listing("bob") is None and catalog.listing("alice") is tools
    now[0] = 61
    assert catalog.listing("alice") is None and catalog.listing("carol") is None
