"""Confirmations in the client: when the client can ask its user (elicitation), bulk_tasks asks
the person about exactly the tasks it would change, and acts only on "accept"; declining or
dismissing changes nothing and says so. Clients that cannot ask keep the confirmation token.
Real SDK clients over streamable HTTP and stdio, on the sessionless protocol (2026-07-28) and
the handshake-era one."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr

from doable.bootstrap import Runtime, build
from doable.platform.settings import Settings
from doable.usecases.inputs import TaskChanges
from doable.web.app import create_app
from tests.conftest import lifespan_running
from tests.mcp_client.conftest import Connect, Person, call


async def _three_tasks(client: Client) -> list[int]:
    return [(await call(client, "add_task", title=f"Old note {i}"))["task_id"] for i in range(3)]


async def _decline_cancel_then_accept(client: Client, person: Person) -> None:
    ids = await _three_tasks(client)
    person.answer = "decline"
    declined = await call(client, "bulk_tasks", action="delete", task_ids=ids)
    assert declined["note"] == "nothing changed: the user declined it in the client"
    assert (declined["confirmed"], declined["count"], declined["confirm_token"]) == (False, 3, None)
    person.answer = "cancel"
    dismissed = await call(client, "bulk_tasks", action="delete", task_ids=ids)
    assert dismissed["note"] == "nothing changed: the user dismissed the question in the client"
    assert (await call(client, "list_tasks"))["total"] == 3
    person.answer = "accept"
    done = await call(client, "bulk_tasks", action="delete", task_ids=ids)
    assert (done["confirmed"], done["count"], done["confirm_token"]) == (True, 3, None)
    assert (await call(client, "list_tasks"))["total"] == 0
    assert person.questions[-1].splitlines()[:4] == ["Delete 3 tasks?", "• Old note 0", "• Old note 1", "• Old note 2"]
    assert len(person.questions) == 3
    await call(client, "undo", token=done["undo"])
    assert (await call(client, "list_tasks"))["total"] == 3


async def test_over_http_the_person_confirms_declines_or_dismisses(over_http: Connect) -> None:
    person = Person()
    async with over_http("alice", person=person) as client:
        assert client.protocol_version == "2026-07-28"
        await _decline_cancel_then_accept(client, person)


async def test_over_stdio_the_person_confirms_declines_or_dismisses(over_stdio: Connect) -> None:
    person = Person()
    async with over_stdio(person=person) as client:
        await _decline_cancel_then_accept(client, person)
    # The handshake-era protocol asks over the connection's back-channel instead.
    person = Person("accept")
    async with over_stdio(person=person, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        ids = [(await call(client, "add_task", title="Water plants"))["task_id"]]
        done = await call(client, "bulk_tasks", action="complete", task_ids=ids)
        assert done["confirmed"] and person.questions == ["Complete 1 task?\n• Water plants"]


async def test_a_client_that_cannot_ask_keeps_the_confirmation_token(over_http: Connect) -> None:
    async with over_http("alice") as client:
        # What the SDK fills in to ask the person is no argument a model could pass.
        [bulk] = [t for t in (await client.list_tools()).tools if t.name == "bulk_tasks"]
        assert set(bulk.input_schema["properties"]) == {
            "action",
            "task_ids",
            "filter",
            "due",
            "confirm_token",
            "idempotency_key",
            "user_id",
        }
        ids = await _three_tasks(client)
        preview = await call(client, "bulk_tasks", action="complete", task_ids=ids)
        assert (preview["confirmed"], preview["confirm_token"][:2]) == (False, "b-")
        assert "call again with confirm_token" in preview["note"]
        done = await call(client, "bulk_tasks", confirm_token=preview["confirm_token"])
        assert (done["confirmed"], done["count"]) == (True, 3)
    # Handshake-era clients over stateless HTTP have no channel for the question: the token path,
    # even when they can elicit.
    person = Person()
    async with over_http("alice", person=person, mode="legacy") as client:
        preview = await call(client, "bulk_tasks", action="reopen", task_ids=ids)
        assert preview["confirm_token"] and not preview["confirmed"] and person.questions == []


async def test_nothing_to_change_asks_nothing(over_http: Connect) -> None:
    person = Person()
    async with over_http("alice", person=person) as client:
        result = await call(client, "bulk_tasks", action="complete", filter="overdue")
        assert result["note"] == "no task to complete: nothing to confirm" and person.questions == []
        failed = await client.call_tool("bulk_tasks", {"action": "delete"})
        assert failed.is_error and "task_ids: give task_ids or filter" in failed.content[0].text  # type: ignore[union-attr]
        assert person.questions == []


async def test_a_task_changed_while_the_person_was_asked_is_asked_about_again(
    over_http: Connect, runtime: Runtime
) -> None:
    person = Person()
    asked = person.__call__

    async def edit_first_time(context: Any, params: Any) -> Any:
        if not person.questions:
            await runtime.service.update("alice", 1, TaskChanges(title="Renamed meanwhile"))
        return await asked(context, params)

    async with over_http("alice", person=edit_first_time) as client:  # type: ignore[arg-type]
        await call(client, "add_task", title="Draft")
        done = await call(client, "bulk_tasks", action="complete", task_ids=[1])
    assert person.questions == ["Complete 1 task?\n• Draft", "Complete 1 task?\n• Renamed meanwhile"]
    assert done["confirmed"] and done["tasks"][0]["title"] == "Renamed meanwhile"


class _RoundRobin(httpx2.AsyncBaseTransport):
    """Each request to the next replica, as a load balancer without affinity would."""

    def __init__(self, *apps: Any) -> None:
        self._next = itertools.cycle([httpx2.ASGITransport(app=app) for app in apps])

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await next(self._next).handle_async_request(request)


@pytest.mark.parametrize("shared_key", [True, False])
async def test_the_answer_may_land_on_another_replica_that_shares_the_key(
    settings: Settings, runtime: Runtime, app: Any, token_for: Callable[..., str], tmp_path: Path, shared_key: bool
) -> None:
    # Replicas share the JWT secret, so they derive the same request-state key; a replica with a
    # key of its own cannot open the state the other sealed, and nothing is changed.
    other_settings = (
        settings if shared_key else settings.model_copy(update={"mcp_request_state_keys": [SecretStr("k" * 32)]})
    )
    other = await build(other_settings)
    try:
        async with lifespan_running(second := create_app(other)):
            headers = {"Authorization": f"Bearer {token_for('alice')}"}
            person = Person()
            async with httpx2.AsyncClient(
                transport=_RoundRobin(app, second), base_url="http://127.0.0.1:8000", headers=headers
            ) as http:
                async with Client(
                    streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http), elicitation_callback=person
                ) as client:
                    await call(client, "add_task", title="Ship it")  # lands on one replica
                    await call(client, "add_task", title="Ship it too")  # the other: the next call starts on the first
                    if shared_key:
                        done = await call(client, "bulk_tasks", action="complete", task_ids=[1, 2])
                        assert done["confirmed"] and len(person.questions) == 1
                    else:
                        with pytest.raises(MCPError, match="Invalid or expired requestState"):
                            await client.call_tool("bulk_tasks", {"action": "complete", "task_ids": [1, 2]})
                        assert (await call(client, "list_tasks", status="completed"))["total"] == 0
    finally:
        await other.aclose()
