"""Every REST endpoint under random and adversarial input: a clear 4xx (JSON naming the problem),
storage exactly as it was, never a 500, a traceback or a hang.

Inputs come from `tests.reliability.fuzz` (huge and control-character strings, unicode edge
cases, impossible dates, invalid timezones, RRULEs that never match, negative and huge ids,
wrong types, extra fields). A request that happens to be valid may succeed; then only "no 5xx"
is checked. Each test reports how many inputs it tried to test-artifacts/reliability.json.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doable.bootstrap import Runtime
from doable.domain.recurrence import next_occurrence
from doable.usecases.inputs import NewTask
from tests.reliability.fuzz import (
    NASTY_TIMEZONES,
    Tried,
    fuzz,
    ints,
    json_values,
    rule_values,
    snapshot,
    task_fields,
    texts,
)

# A request that takes longer than this is a hang (the slowest legitimate one takes milliseconds).
HANG_SECONDS = 10.0
# Some inputs are 70 kB strings; hypothesis warns when it prints such an input (a failure report).
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@pytest.fixture
async def seeded(quiet_runtime: Runtime) -> Runtime:
    """Alice has tasks 1-3 (one repeating with a reminder), so ids in range hit real rows."""
    service = quiet_runtime.service
    await service.add("alice", NewTask(title="plain"))
    await service.add(
        "alice",
        NewTask(
            title="weekly review",
            due="2026-12-04T16:00",
            reminders=[{"minutes_before": 30}],  # type: ignore[list-item]
            recurrence="weekly",
        ),
    )
    await service.add("alice", NewTask(title="tagged", tags=["work"], due="2026-12-01"))
    return quiet_runtime


async def exchange(
    http: httpx2.AsyncClient,
    runtime: Runtime,
    tried: Tried,
    method: str,
    url: str,
    *,
    unavailable_ok: bool = False,
    **kwargs: Any,
) -> httpx2.Response:
    """Send one request and check what every answer must satisfy. (`unavailable_ok`: chat has no
    model in these tests, so a valid chat request gets its documented 503 `chat_unavailable`.)"""
    assert runtime.sql_engine is not None
    before = await snapshot(runtime.sql_engine)
    response = await asyncio.wait_for(http.request(method, url, **kwargs), HANG_SECONDS)
    tried.count(response.status_code)
    if unavailable_ok and response.status_code == 503:
        # Not bad input: the turn (and its thread) is kept, and the body names the conversation.
        assert response.json()["error"] == "chat_unavailable", response.text[:300]
        return response
    else:
        assert response.status_code < 500, (method, url, kwargs, response.status_code, response.text[:500])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text[:200]
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
        assert body["message"], body
        assert await snapshot(runtime.sql_engine) == before, (method, url, kwargs, response.text[:300])
    return response


def _json_or_raw(payload: Any) -> dict[str, Any]:
    """Most bodies as JSON; some as bytes that are not JSON at all, or JSON with NaN."""
    if isinstance(payload, bytes):
        return {"content": payload, "headers": {"content-type": "application/json"}}
    return {"content": json.dumps(payload).encode(), "headers": {"content-type": "application/json"}}


RAW_BODIES = st.sampled_from(
    [b"", b"{", b"[]", b"null", b"42", b'"title"', b"\xff\xfe\x00", b'{"title": NaN}', b'{"title": "a"' * 3, b"{}" * 1000]
)


@fuzz(100)
@given(body=st.one_of(task_fields(), RAW_BODIES, json_values()), key=st.none() | texts())
async def test_creating_a_task_refuses_bad_input_cleanly(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str],
    tried: Tried, body: Any, key: str | None
) -> None:
    request = _json_or_raw(body)
    headers = {**alice, **request.pop("headers")}
    if key is not None:
        headers["Idempotency-Key"] = key.encode("utf-8", "surrogatepass")  # type: ignore[assignment]
    response = await exchange(quiet_http, seeded, tried, "POST", "/api/tasks", headers=headers, **request)
    if response.status_code == 201:
        _assert_meaningful_recurrence(response.json())


@fuzz(80)
@given(task_id=st.one_of(st.integers(1, 4), ints()), body=st.one_of(task_fields(), RAW_BODIES))
async def test_updating_a_task_refuses_bad_input_cleanly(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str],
    tried: Tried, task_id: int, body: Any
) -> None:
    request = _json_or_raw(body)
    headers = {**alice, **request.pop("headers")}
    response = await exchange(quiet_http, seeded, tried, "PATCH", f"/api/tasks/{task_id}", headers=headers, **request)
    if response.status_code == 200:
        _assert_meaningful_recurrence(response.json())


ID_TEXT = st.one_of(
    ints().map(str),
    st.sampled_from(["abc", "1.5", "1e3", "0x10", " 1", "1 ", "%00", "-0", "+1", "٣", "9" * 400, "1;DROP TABLE tasks"]),
    texts(sendable=True).filter(lambda t: 0 < len(t) < 4000),
)
ACTIONS = [
    ("GET", "/api/tasks/{}"),
    ("DELETE", "/api/tasks/{}"),
    ("POST", "/api/tasks/{}/complete"),
    ("POST", "/api/tasks/{}/reopen"),
    ("GET", "/api/tasks/{}/history"),
]


@fuzz(80)
@given(action=st.sampled_from(ACTIONS), task_id=ID_TEXT, key=st.none() | st.sampled_from(["k1", "", " ", "x" * 129, "é"]))
async def test_task_ids_in_paths_are_refused_cleanly(
    quiet_http: httpx2.AsyncClient,
    seeded: Runtime,
    alice: dict[str, str],
    tried: Tried,
    action: tuple[str, str],
    task_id: str,
    key: str | None,
) -> None:
    method, template = action
    headers = dict(alice)
    if key is not None:
        headers["Idempotency-Key"] = key.encode()  # type: ignore[assignment]
    await exchange(quiet_http, seeded, tried, method, template.format(quote(task_id, safe="")), headers=headers)


QUERY_KEYS = [
    "status",
    "priority",
    "tags",
    "tags_mode",
    "due",
    "due_after",
    "due_before",
    "search",
    "filter",
    "sort",
    "order",
    "limit",
    "cursor",
    "owner",
    "user_id",
]
QUERY_VALUE = st.one_of(
    texts(sendable=True).filter(lambda t: len(t) < 4000),  # a URL carries at most 64 kB
    ints().map(str),
    st.sampled_from(
        [
            "pending",
            "completed",
            "all",
            "overdue",
            "today",
            "due",
            "priority",
            "desc",
            "0",
            "201",
            "-5",
            "overdue & (#work | #home) & p:high",
            "((((((((((((((((((((x",
            "!" * 500,
            "due before: friday",
            "eyJub3QiOiJhIGN1cnNvciJ9",
            "2026-02-30",
        ]
    ),
)


@fuzz(100)
@given(params=st.lists(st.tuples(st.sampled_from(QUERY_KEYS), QUERY_VALUE), max_size=6))
async def test_listing_refuses_bad_queries_cleanly(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str],
    tried: Tried, params: list[tuple[str, str]]
) -> None:
    response = await exchange(quiet_http, seeded, tried, "GET", "/api/tasks", params=params, headers=alice)
    if response.status_code == 200:
        assert response.json()["returned"] <= 200


@fuzz(50)
@given(
    timezone=st.one_of(st.sampled_from(NASTY_TIMEZONES), texts(), json_values()),
    extra=st.dictionaries(st.sampled_from(["user_id", "owner"]), json_values(), max_size=1),
)
async def test_setting_the_timezone_refuses_bad_names_cleanly(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str],
    tried: Tried, timezone: Any, extra: dict[str, Any]
) -> None:
    await exchange(quiet_http, seeded, tried, "PUT", "/api/profile", json={"timezone": timezone, **extra}, headers=alice)


OTHER_ENDPOINTS = st.one_of(
    st.tuples(st.just("GET"), st.just("/api/notifications"), st.dictionaries(st.sampled_from(["limit", "unread_only", "x"]), QUERY_VALUE, max_size=2), st.none()),
    st.tuples(st.just("POST"), st.just("/api/notifications/read"), st.just({}), st.one_of(st.fixed_dictionaries({"ids": json_values()}), json_values())),
    st.tuples(st.just("GET"), st.just("/api/history"), st.dictionaries(st.sampled_from(["limit", "before"]), QUERY_VALUE, max_size=2), st.none()),
    st.tuples(
        st.just("PUT"),
        st.just("/api/webhook"),
        st.just({}),
        st.one_of(
            st.fixed_dictionaries(
                {
                    "url": st.one_of(
                        st.sampled_from(
                            [
                                "http://127.0.0.1/hook",
                                "http://169.254.169.254/latest/meta-data",
                                "http://[::1]:8000/",
                                "http://localhost/",
                                "file:///etc/passwd",
                                "gopher://example.com",
                                "https://user:pw@example.com/",
                                "https://example.com/" + "a" * 2100,
                                "https:///nohost",
                                "http://10.0.0.1/",
                                "http://0x7f000001/",
                                "http://[::ffff:127.0.0.1]/",
                            ]
                        ),
                        texts(),
                        json_values(),
                    )
                }
            ),
            json_values(),
        ),
    ),
    st.tuples(st.just("GET"), st.just("/api/webhook"), st.just({}), st.none()),
    st.tuples(st.just("DELETE"), st.just("/api/webhook"), st.just({}), st.none()),
)


@fuzz(100)
@given(call=OTHER_ENDPOINTS)
async def test_notifications_webhook_and_history_refuse_bad_input_cleanly(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str],
    tried: Tried, call: tuple[str, str, dict[str, Any], Any]
) -> None:
    method, path, params, body = call
    kwargs: dict[str, Any] = {"params": params, "headers": alice}
    if body is not None:
        request = _json_or_raw(body)  # escaped JSON: a lone surrogate is sendable that way
        kwargs["headers"] = {**alice, **request.pop("headers")}
        kwargs.update(request)
    response = await exchange(quiet_http, seeded, tried, method, path, **kwargs)
    if method == "PUT" and response.status_code == 200:
        # Accepted hooks never point back into this machine or its network.
        url = body["url"]
        assert all(bad not in url for bad in ("127.0.0.1", "localhost", "169.254", "[::1]", "10.0.0.1", "0x7f"))


CHAT_BODIES = st.one_of(
    json_values(),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["threads.create", "threads.add_user_message", "threads.get_by_id", "items.list", "threads.delete", "nope"])},
        optional={"params": json_values(), "metadata": json_values()},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("threads.add_user_message"),
            "params": st.fixed_dictionaries(
                {
                    "thread_id": st.one_of(st.sampled_from(["thr_0", "../x", ""]), texts()),
                    "input": st.fixed_dictionaries(
                        {
                            "content": st.lists(st.fixed_dictionaries({"type": st.just("input_text"), "text": texts()}), max_size=2),
                            "attachments": st.just([]),
                            "inference_options": st.just({}),
                        }
                    ),
                }
            ),
        }
    ),
)
SPEC_BODIES = st.one_of(
    json_values(),
    st.fixed_dictionaries({"message": st.one_of(texts(), json_values())}, optional={"conversation_id": st.one_of(texts(), ints(), json_values())}),
)


@fuzz(60)
@given(body=st.one_of(CHAT_BODIES, RAW_BODIES), spec=st.one_of(SPEC_BODIES, RAW_BODIES), user=st.sampled_from(["alice", "bob", "a%2Fb", "..", "x" * 300]))
async def test_chat_endpoints_refuse_bad_input_cleanly(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str],
    tried: Tried, body: Any, spec: Any, user: str
) -> None:
    for path, payload in (("/chatkit", body), (f"/api/{user}/chat", spec)):
        request = _json_or_raw(payload)
        headers = {**alice, **request.pop("headers")}
        response = await exchange(
            quiet_http, seeded, tried, "POST", path, headers=headers, unavailable_ok=True, **request
        )
        if response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream"):
            assert "Traceback" not in response.text


# ---- helpers ------------------------------------------------------------------------------------

def _assert_meaningful_recurrence(task: dict[str, Any]) -> None:
    """An accepted repeating task's rule produces a date after its due date (leaving COUNT and
    UNTIL aside), and does not end before it. (Alice's timezone is UTC in these tests.)"""
    recurrence = task.get("recurrence")
    if not recurrence:
        return
    parts = dict(p.split("=", 1) for p in recurrence["rule"].split(";"))
    endless = ";".join(f"{k}={v}" for k, v in parts.items() if k not in ("COUNT", "UNTIL"))
    if task["all_day"]:
        due = datetime.combine(date.fromisoformat(task["due"]), time(), UTC)
    else:
        due = datetime.fromisoformat(task["due"])
    nxt = next_occurrence(endless, start=due, after=due, tz=ZoneInfo("UTC"), all_day=task["all_day"])
    assert nxt is not None, f"accepted a rule that never produces a date after its due date: {recurrence['rule']} at {task['due']}"
    if "UNTIL" in parts:
        assert parts["UNTIL"][:8] >= due.strftime("%Y%m%d"), f"accepted a rule that ends before its due date: {recurrence['rule']}"


VALID_DUES = st.one_of(
    st.dates(min_value=date(1970, 1, 2), max_value=date(2100, 12, 31)).map(date.isoformat),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 12, 31)).map(
        lambda d: d.replace(second=0, microsecond=0).isoformat(timespec="minutes")
    ),
    st.sampled_from(["1970-01-01T00:00", "2026-12-01T09:00", "2026-12-05", "2028-02-29", "2026-01-31T10:00"]),
)


@fuzz(80)
@given(due=VALID_DUES, rule=rule_values())
async def test_repeating_tasks_take_only_rules_that_produce_dates_and_never_hang(
    quiet_http: httpx2.AsyncClient, seeded: Runtime, alice: dict[str, str], tried: Tried, due: str, rule: Any
) -> None:
    """A rule that never yields a date after the task's due date (February 30th, every 7 days on
    a Saturday from a Tuesday, UNTIL before the due date) is refused when the task is created;
    one that is accepted is then completed, and the next occurrence follows without a hang."""
    request = _json_or_raw({"title": "repeat", "due": due, "recurrence": rule})
    headers = {**alice, **request.pop("headers")}
    response = await exchange(quiet_http, seeded, tried, "POST", "/api/tasks", headers=headers, **request)
    if response.status_code != 201:
        return
    task = response.json()
    _assert_meaningful_recurrence(task)
    delivery = seeded.detached_delivery  # type: ignore[attr-defined]
    await delivery.settle()  # the created event: reminders, audit
    done = await exchange(quiet_http, seeded, tried, "POST", f"/api/tasks/{task['id']}/complete", headers=alice)
    assert done.status_code == 200
    await asyncio.wait_for(delivery.settle(), HANG_SECONDS)  # the recurrence worker computes the next date
    await exchange(quiet_http, seeded, tried, "DELETE", f"/api/tasks/{task['id']}", headers=alice)
