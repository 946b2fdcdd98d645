"""Edge values of every numeric and date parameter, over REST and over MCP: a 4xx (a tool error)
that names the field, storage unchanged, never a 5xx, an internal error or a dropped answer.

The values sit where representations end: the first and last days of the calendar (and the
instants a timezone offset pushes past them), filter dates at those ends, numbers around 2^53,
2^63 and beyond (what SQLite and PostgreSQL bind as a signed 64-bit integer), forged cursors
whose fields hold anything, and `Last-Event-ID` values that str.isdigit() would take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doable.bootstrap import Runtime
from doable.usecases.inputs import NewTask
from doable.web.live import event_id
from tests.reliability.fuzz import (
    EDGE_DATES,
    EDGE_INTS,
    LAST_EVENT_IDS,
    Tried,
    edge_dates,
    edge_filters,
    forged_cursors,
    fuzz,
    ints,
    snapshot,
)
from tests.reliability.test_rest_bad_input import exchange

HANG_SECONDS = 10.0
NUMBERS = st.one_of(st.sampled_from(EDGE_INTS), ints())
NUMBER_TEXT = st.one_of(NUMBERS.map(str), st.sampled_from(LAST_EVENT_IDS))


@pytest.fixture
async def seeded(quiet_runtime: Runtime) -> Runtime:
    service = quiet_runtime.service
    for i in range(3):
        await service.add("alice", NewTask(title=f"task {i}", due=f"2026-12-0{i + 1}", priority="high"))
    return quiet_runtime


# ---- REST ------------------------------------------------------------------------------------

LIST_PARAMS: dict[str, st.SearchStrategy[str]] = {
    "due_after": edge_dates(),
    "due_before": edge_dates(),
    "filter": edge_filters(),
    "limit": NUMBER_TEXT,
    "cursor": forged_cursors(),
}


@fuzz(40)
@given(
    params=st.lists(st.sampled_from(sorted(LIST_PARAMS)), min_size=1, max_size=3, unique=True).flatmap(
        lambda keys: st.tuples(*(st.tuples(st.just(k), LIST_PARAMS[k]) for k in keys))
    ),
    sort=st.sampled_from(["due", "priority", "title", "created", "updated"]),
)
async def test_listing_with_edge_values(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str], tried: Tried,
    params: tuple[tuple[str, str], ...], sort: str,
) -> None:
    await exchange(quiet_http, seeded, tried, "GET", "/api/tasks", params=[*params, ("sort", sort)], headers=alice)


@fuzz(40)
@given(
    route=st.sampled_from(
        [
            ("GET", "/api/tasks/{}"),
            ("PATCH", "/api/tasks/{}"),
            ("DELETE", "/api/tasks/{}"),
            ("POST", "/api/tasks/{}/complete"),
            ("GET", "/api/tasks/{}/history"),
            ("GET", "/api/history?before={}"),
            ("GET", "/api/tasks/1/history?before={}"),
            ("GET", "/api/history?limit={}"),
            ("GET", "/api/notifications?limit={}"),
        ]
    ),
    number=NUMBER_TEXT,
)
async def test_numbers_in_paths_and_queries(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str], tried: Tried,
    route: tuple[str, str], number: str,
) -> None:
    method, template = route
    kwargs: dict[str, Any] = {"json": {"title": "x"}} if method == "PATCH" else {}
    await exchange(quiet_http, seeded, tried, method, template.format(number), headers=alice, **kwargs)


@fuzz(40)
@given(
    body=st.one_of(
        st.builds(lambda d: {"title": "x", "due": d}, edge_dates()),
        st.builds(lambda d: {"title": "x", "due": "2026-12-01T09:00", "reminders": [{"at": d}]}, edge_dates()),
        st.builds(lambda n, d: {"title": "x", "due": d, "reminders": [{"minutes_before": n}]}, NUMBERS, st.sampled_from(EDGE_DATES)),
        st.builds(lambda ids: {"action": "complete", "task_ids": ids}, st.lists(NUMBERS, min_size=1, max_size=3)),
        st.builds(lambda d: {"action": "reschedule", "filter": "pending", "due": d}, edge_dates()),
        st.builds(lambda f: {"action": "delete", "filter": f}, edge_filters()),
        st.builds(lambda ids: {"ids": ids}, st.lists(NUMBERS, min_size=1, max_size=3)),
    )
)
async def test_numbers_and_dates_in_bodies(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str], tried: Tried, body: dict[str, Any]
) -> None:
    if "ids" in body:
        method, url = "POST", "/api/notifications/read"
    elif "action" in body:
        method, url = "POST", "/api/tasks/bulk"
    else:
        method, url = "POST", "/api/tasks"
    await exchange(quiet_http, seeded, tried, method, url, json=body, headers=alice)


@pytest.mark.parametrize("value", [*LAST_EVENT_IDS, "12", str(2**63 - 1)])
def test_last_event_id_takes_only_ascii_digits_that_fit_an_id(value: str) -> None:
    parsed = event_id(value)
    if value.isascii() and value.isdigit() and int(value) <= 2**63 - 1:
        assert parsed == int(value)
    else:
        assert parsed is None


@pytest.mark.parametrize("value", [*LAST_EVENT_IDS, str(2**63)])
async def test_replay_after_any_last_event_id_is_bounded_or_refused(seeded: Runtime, value: str) -> None:
    """What the stream does with Last-Event-ID: the parsed id (or none) reaches the inbox, which
    binds it safely."""
    assert seeded.inbox is not None
    after = event_id(value)
    if after is not None:
        assert await seeded.inbox.since("alice", after, 10) == []


# ---- MCP -------------------------------------------------------------------------------------


# Every numeric or date parameter of every tool (tests/agent_tools/test_tool_surface.py lists the tools).
MCP_CALLS: list[tuple[str, Callable[[Any], dict[str, Any]], st.SearchStrategy[Any]]] = [
    ("list_tasks", lambda v: {"due_after": v}, edge_dates()),
    ("list_tasks", lambda v: {"due_before": v}, edge_dates()),
    ("list_tasks", lambda v: {"filter": v}, edge_filters()),
    ("list_tasks", lambda v: {"cursor": v[0], "sort": v[1]}, st.tuples(forged_cursors(), st.sampled_from(["due", "title", "priority", "created"]))),
    ("list_tasks", lambda v: {"limit": v}, NUMBERS),
    ("add_task", lambda v: {"title": "x", "due": v}, edge_dates()),
    ("add_task", lambda v: {"title": "x", "due": "2026-12-01T09:00", "reminders": [{"at": v}]}, edge_dates()),
    ("add_task", lambda v: {"title": "x", "due": "2026-12-01", "reminders": [{"minutes_before": v}]}, NUMBERS),
    ("add_task", lambda v: {"title": "x", "due": v, "preview": True}, edge_dates()),
    ("update_task", lambda v: {"task_id": 1, "due": v}, edge_dates()),
    ("get_task", lambda v: {"task_id": v}, NUMBERS),
    ("update_task", lambda v: {"task_id": v, "title": "y"}, NUMBERS),
    ("complete_task", lambda v: {"task_id": v}, NUMBERS),
    ("reopen_task", lambda v: {"task_id": v}, NUMBERS),
    ("delete_task", lambda v: {"task_id": v}, NUMBERS),
    ("bulk_tasks", lambda v: {"action": "complete", "task_ids": [v]}, NUMBERS),
    ("bulk_tasks", lambda v: {"action": "reschedule", "filter": "pending", "due": v}, edge_dates()),
    ("bulk_tasks", lambda v: {"action": "delete", "filter": v}, edge_filters()),
    ("task_history", lambda v: {"task_id": v}, NUMBERS),
    ("task_history", lambda v: {"limit": v}, NUMBERS),
    ("list_notifications", lambda v: {"limit": v}, NUMBERS),
    ("mark_read", lambda v: {"ids": [v]}, NUMBERS),
]


@fuzz(60)
@given(data=st.data())
async def test_every_tool_takes_edge_values_cleanly(
    connect: Callable[[], Any], seeded: Runtime, tried: Tried, data: st.DataObject
) -> None:
    name, build, values = data.draw(st.sampled_from(MCP_CALLS), label="call")
    args = build(data.draw(values, label="value"))
    assert seeded.sql_engine is not None
    before = await snapshot(seeded.sql_engine)
    async with connect() as client:
        result = await asyncio.wait_for(client.call_tool(name, args), HANG_SECONDS)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not text.startswith("internal") and "Traceback" not in text, (name, args, text)
    if result.is_error:
        tried.count("tool error")
        assert text.strip(), (name, args)
        if not args.get("preview"):
            assert await snapshot(seeded.sql_engine) == before, (name, args, text)
    else:
        tried.count("ok")
