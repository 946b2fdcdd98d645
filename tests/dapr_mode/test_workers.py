"""The workers as Dapr apps on the double: reminders through the Jobs API (delivered only to the
app-id that scheduled them) and the cron sweeper, notifications into the inbox in Dapr state,
the next occurrence of a recurring task created by service invocation of the API, the audit
history. One clock drives the API, the workers and the double's scheduler."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from doable.bootstrap import Runtime
from doable.domain.clock import Clock
from doable.domain.reminders import job_name
from doable.platform import topology
from tests.conftest import auth
from tests.dapr_double import DaprDouble, ManualClock
from tests.dapr_mode.conftest import WorkerFactory, settle, sidecar_client

REMINDERS_APP = topology.WORKER_APP_IDS["reminders"]


@pytest.fixture
def runtime_clock(dapr_clock: ManualClock) -> Clock:
    return dapr_clock


def iso(clock: ManualClock, delta: timedelta) -> str:
    return (clock.now() + delta).isoformat().replace("+00:00", "Z")


async def add_task(http: httpx2.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    response = await http.post("/api/tasks", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def notifications(http: httpx2.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await http.get("/api/notifications", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()["notifications"]  # type: ignore[no-any-return]


@pytest.fixture
async def reminder_apps(app: FastAPI, start_worker: WorkerFactory, dapr_clock: ManualClock) -> None:
    await start_worker("reminders", clock=dapr_clock)
    await start_worker("notifications", clock=dapr_clock)


@pytest.mark.usefixtures("reminder_apps")
async def test_a_reminder_fires_through_the_jobs_api_and_lands_in_the_inbox(
    runtime: Runtime,
    double: DaprDouble,
    dapr_clock: ManualClock,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    token = token_for("alice")
    task = await add_task(
        http,
        token,
        title="Call the plumber",
        due=iso(dapr_clock, timedelta(hours=1)),
        reminders=[{"minutes_before": 30}],
    )
    await settle(runtime, double)
    [job] = await double.jobs()
    assert job.name == job_name("alice", task["id"], "before-30m") and job.app_id == REMINDERS_APP

    dapr_clock.advance(timedelta(minutes=29))
    await double.tick()
    await settle(runtime, double)
    assert await notifications(http, token) == []

    dapr_clock.advance(timedelta(minutes=1, seconds=1))
    assert await double.tick() == 1
    await settle(runtime, double)

    # The trigger went only to the app-id that scheduled the job.
    assert {t.app_id for t in double.job_triggers()} == {REMINDERS_APP}
    [message] = double.published_messages(topology.REMINDERS)
    assert message.partition_key == "alice" and message.cloud_event is not None
    reminder = message.cloud_event["data"]
    assert {k: reminder[k] for k in ("task_id", "title", "user_id")} == {
        "task_id": task["id"],
        "title": "Call the plumber",
        "user_id": "alice",
    }
    assert {"due_at", "remind_at", "event_id"} <= set(reminder)
    [note] = await notifications(http, token)
    assert (note["task_id"], note["title"], note["read"]) == (task["id"], "Call the plumber", False)
    # The notification went on to the API's live hub as well.
    assert [a.outcome for a in double.deliveries(topology.API_APP_ID, topology.NOTIFICATIONS)] == ["success"]
    assert await notifications(http, token_for("bob")) == []


@pytest.mark.usefixtures("reminder_apps")
async def test_the_cron_sweeper_sends_a_reminder_whose_job_was_lost_once(
    runtime: Runtime,
    double: DaprDouble,
    dapr_clock: ManualClock,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    token = token_for("alice")
    task = await add_task(
        http, token, title="Water plants", due=iso(dapr_clock, timedelta(hours=1)), reminders=[{"minutes_before": 30}]
    )
    await settle(runtime, double)
    reminders_sidecar = sidecar_client(double, REMINDERS_APP)
    try:
        await reminders_sidecar.delete_job(job_name("alice", task["id"], "before-30m"))  # the job is lost
    finally:
        await reminders_sidecar.aclose()
    assert await double.jobs() == []

    dapr_clock.advance(timedelta(minutes=30, seconds=45))  # past the time and the sweeper's grace
    for _ in range(2):
        answer = await double.trigger_binding(REMINDERS_APP, topology.REMINDER_SWEEP_BINDING)
        assert answer.status_code == 200
        await settle(runtime, double)

    [note] = await notifications(http, token)
    assert note["title"] == "Water plants"
    assert len(double.published_messages(topology.REMINDERS)) == 1


async def test_completing_a_recurring_task_creates_the_next_one_by_service_invocation(
    app: FastAPI,
    runtime: Runtime,
    double: DaprDouble,
    start_worker: WorkerFactory,
    dapr_clock: ManualClock,
    http: httpx2.AsyncClient,
    token_for: Callable[..., str],
) -> None:
    await start_worker("recurrence", clock=dapr_clock)
    await start_worker("audit", clock=dapr_clock)
    token = token_for("alice")
    due = (dapr_clock.now() + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    task = await add_task(http, token, title="Stand-up", due=due.strftime("%Y-%m-%dT%H:%M"), recurrence="daily")
    await settle(runtime, double)
    double.duplicate_deliveries(5, app_id="doable-recurrence")  # every event arrives twice

    assert (await http.post(f"/api/tasks/{task['id']}/complete", headers=auth(token))).status_code == 200
    await settle(runtime, double)

    query = {"status": "all", "sort": "created", "order": "asc"}
    listed = (await http.get("/api/tasks", params=query, headers=auth(token))).json()
    assert [(t["id"], t["title"], t["completed"]) for t in listed["tasks"]] == [
        (1, "Stand-up", True),
        (2, "Stand-up", False),
    ]
    assert listed["tasks"][1]["due"].startswith((due + timedelta(days=1)).strftime("%Y-%m-%dT09:00"))
    assert any(a.duplicate for a in double.deliveries("doable-recurrence"))
    history = (await http.get("/api/history", headers=auth(token))).json()["entries"]
    assert [(e["event"], e["task_id"]) for e in history] == [("created", 2), ("completed", 1), ("created", 1)]
