"""Prompts and resources as a client's menus show them: three prompts that spell out which tools
to call, today's tasks and a task by URI, read as the signed-in user only. Over streamable HTTP
and stdio with the SDK client."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.mcp_client.conftest import Connect, call
from tests.servers import DOABLE, clean_env

# What a prompt or resource listing costs when the client puts it in front of the model.
LISTING_BUDGET = 600


def _tokens(text: str) -> int:
    from bpe_openai import get_encoding

    return len(get_encoding("o200k_base").encode(text))


async def _prompts_say_which_tools_to_call(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(prompts) == {"plan_my_day", "weekly_review", "triage_overdue"}
    assert {a.name for a in prompts["plan_my_day"].arguments or []} == {"hours", "focus"}
    assert not any(a.required for a in prompts["plan_my_day"].arguments or [])
    plan = await client.get_prompt("plan_my_day", {"hours": "5", "focus": "work"})
    text = plan.messages[0].content.text  # type: ignore[union-attr]
    assert plan.messages[0].role == "user"
    assert "about 5 hours" in text and "focus today: work" in text
    assert "get_profile" in text and "filter 'overdue | today'" in text
    review = (await client.get_prompt("weekly_review")).messages[0].content.text  # type: ignore[union-attr]
    assert "task_history" in review and "next_7_days" in review
    triage = (await client.get_prompt("triage_overdue", {"tag": "#work"})).messages[0].content.text  # type: ignore[union-attr]
    assert "filter 'overdue & #work'" in triage and "bulk_tasks" in triage
    listing = (await client.list_prompts()).model_dump(mode="json", exclude_none=True)
    assert _tokens(json.dumps(listing, separators=(",", ":"))) <= LISTING_BUDGET


async def _resources_show_todays_tasks_and_one_task(client: Client) -> int:
    listed = (await client.list_resources()).resources
    assert [(str(r.uri), r.mime_type) for r in listed] == [("tasks://today", "application/json")]
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["tasks://task/{id}"]

    now = datetime.now(UTC)
    await call(client, "add_task", title="Yesterday's call", due=(now - timedelta(days=1)).date().isoformat())
    await call(client, "add_task", title="Today's report", due=now.isoformat())
    await call(client, "add_task", title="Next week", due=(now + timedelta(days=8)).date().isoformat())
    done = await call(client, "add_task", title="Done today", due=now.isoformat())
    await call(client, "complete_task", task_id=done["task_id"])

    today = json.loads((await client.read_resource("tasks://today")).contents[0].text)  # type: ignore[union-attr]
    assert [t["title"] for t in today["tasks"]] == ["Yesterday's call", "Today's report"]
    assert today["timezone"] == "UTC" and today["today"] == now.date().isoformat()

    one = json.loads((await client.read_resource("tasks://task/2")).contents[0].text)  # type: ignore[union-attr]
    assert (one["task_id"], one["title"], one["task"]["completed"]) == (2, "Today's report", False)
    with pytest.raises(MCPError, match="not_found: no such task: tasks://task/999"):
        await client.read_resource("tasks://task/999")
    with pytest.raises(MCPError, match="no such task"):
        await client.read_resource("tasks://task/two")
    return int(one["task_id"])


async def test_over_http_prompts_and_resources_for_the_signed_in_user_only(over_http: Connect) -> None:
    async with over_http("alice") as alice:
        await _prompts_say_which_tools_to_call(alice)
        task_id = await _resources_show_todays_tasks_and_one_task(alice)
    async with over_http("bob") as bob:
        # Another user's task is not found (not "forbidden": ids are per user).
        with pytest.raises(MCPError, match="not_found"):
            await bob.read_resource(f"tasks://task/{task_id}")
        today = json.loads((await bob.read_resource("tasks://today")).contents[0].text)  # type: ignore[union-attr]
        assert today["tasks"] == [] and today["total"] == 0


@pytest.fixture
def carol_token(tmp_path: Path) -> str:
    """A token for carol, minted by `doable token` for the data folder the stdio servers use."""
    minted = subprocess.run(
        [*DOABLE, "token", "--user", "carol"], env=clean_env(tmp_path / "data"), capture_output=True, text=True
    )
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


async def test_over_stdio_prompts_and_resources(over_stdio: Connect, carol_token: str) -> None:
    async with over_stdio() as client:
        await _prompts_say_which_tools_to_call(client)
        task_id = await _resources_show_todays_tasks_and_one_task(client)
    # The same data, another user (the stdio server of a token's user): the local user's task is not found.
    async with over_stdio(DOABLE_TOKEN=carol_token) as carol:
        with pytest.raises(MCPError, match="not_found"):
            await carol.read_resource(f"tasks://task/{task_id}")
