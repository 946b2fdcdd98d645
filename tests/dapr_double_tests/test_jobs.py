"""Jobs API: scheduling, triggering with a manual clock, overwrite/delete, failure policies, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import pytest_asyncio

from tests.dapr_double import DaprDouble, ManualClock

from .conftest import DoubleFactory
from .recording_app import RecordingApp, Reply

pytestmark = pytest.mark.asyncio

JOBS = "/v1.0/jobs"


@pytest_asyncio.fixture
async def scheduler(make_double: DoubleFactory, app: RecordingApp, manual_clock: ManualClock) -> DaprDouble:
    return await make_double(app=app.app, clock=manual_clock)


async def test_job_fires_at_due_time_only_to_the_scheduling_app(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    other = RecordingApp()
    await scheduler.register_app("worker", asgi_app=other.app)
    response = await scheduler.client().post(f"{JOBS}/remind-7", json={"dueTime": "30s", "data": {"task_id": 7}})
    assert response.status_code == 204

    manual_clock.advance(29)
    assert await scheduler.tick() == 0
    assert app.at("/job/remind-7") == []

    manual_clock.advance(1)
    assert await scheduler.tick() == 1
    [trigger] = app.at("/job/remind-7")
    assert trigger.method == "POST"
    assert trigger.json() == {"task_id": 7}
    assert trigger.headers["content-type"] == "application/json"
    assert [r.path for r in other.received] == ["/dapr/subscribe"]
    assert await scheduler.jobs() == []  # a one-shot job is gone after its trigger


async def test_due_time_accepts_rfc3339(scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock) -> None:
    await scheduler.client().post(f"{JOBS}/at", json={"dueTime": "2030-01-01T01:00:00Z", "data": "ping"})
    manual_clock.advance(timedelta(minutes=59))
    assert await scheduler.tick() == 0
    manual_clock.advance(timedelta(minutes=1))
    assert await scheduler.tick() == 1
    assert app.at("/job/at")[0].body == b'"ping"'


async def test_recurring_job_honours_repeats(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    await scheduler.client().post(f"{JOBS}/tick", json={"schedule": "@every 10s", "repeats": 3})
    for _ in range(5):
        manual_clock.advance(10)
        await scheduler.tick()
    assert len(app.at("/job/tick")) == 3
    assert app.at("/job/tick")[0].body == b""  # no data, no body
    assert await scheduler.jobs() == []


async def test_missed_occurrences_are_all_triggered(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    await scheduler.client().post(f"{JOBS}/tick", json={"schedule": "@every 1m"})
    manual_clock.advance(timedelta(minutes=3, seconds=30))
    assert await scheduler.tick() == 3
    [job] = await scheduler.jobs()
    assert job.next_fire_at == manual_clock.now() + timedelta(seconds=30)


async def test_cron_schedule_with_due_time_and_ttl(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    body = {"schedule": "0 */15 * * * *", "dueTime": "5m", "ttl": "40m"}
    await scheduler.client().post(f"{JOBS}/quarterly", json=body)
    manual_clock.advance(timedelta(hours=2))
    await scheduler.tick()
    # A ttl offset counts from the due time (go-etcd-cron internal/scheduler/builder.go Parse):
    # expiry 00:45. 00:05 (dueTime), 00:15, 00:30, 00:45 (not after the expiry); 01:00 is.
    assert [t.attempt for t in scheduler.job_triggers()] == [1, 1, 1, 1]
    assert await scheduler.jobs() == []


async def test_duplicate_name_without_overwrite_is_409(scheduler: DaprDouble) -> None:
    client = scheduler.client()
    assert (await client.post(f"{JOBS}/j", json={"dueTime": "1h"})).status_code == 204
    duplicate = await client.post(f"{JOBS}/j", json={"dueTime": "2h"})
    assert duplicate.status_code == 409
    assert duplicate.json()["errorCode"] == "DAPR_SCHEDULER_SCHEDULE_JOB"


async def test_overwrite_replaces_the_job(scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock) -> None:
    client = scheduler.client()
    await client.post(f"{JOBS}/j", json={"dueTime": "1h", "data": "old"})
    assert (
        await client.post(f"{JOBS}/j", json={"dueTime": "10s", "data": "new", "overwrite": True})
    ).status_code == 204
    manual_clock.advance(10)
    await scheduler.tick()
    manual_clock.advance(timedelta(hours=1))
    await scheduler.tick()
    assert [r.body for r in app.at("/job/j")] == [b'"new"']


async def test_deleted_job_never_fires(scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock) -> None:
    client = scheduler.client()
    await client.post(f"{JOBS}/j", json={"dueTime": "10s"})
    assert (await client.delete(f"{JOBS}/j")).status_code == 204
    assert (await client.delete(f"{JOBS}/j")).status_code == 204  # deleting an unknown job succeeds
    manual_clock.advance(60)
    assert await scheduler.tick() == 0
    assert app.at("/job/j") == []


async def test_get_job_returns_the_protojson_shape(scheduler: DaprDouble) -> None:
    client = scheduler.client()
    body = {
        "schedule": "@every 1m",
        "repeats": 123,
        "dueTime": "1000s",
        "ttl": "123s",
        "data": "hello world",
        "failure_policy": {"constant": {"interval": "3s", "max_retries": 5}},
    }
    await client.post(f"{JOBS}/test", json=body)
    response = await client.get(f"{JOBS}/test")
    assert response.status_code == 200
    assert response.json() == {
        "name": "test",
        "schedule": "@every 1m",
        "repeats": 123,
        "dueTime": "1000s",
        "ttl": "123s",
        "data": {"@type": "type.googleapis.com/google.protobuf.Value", "value": "hello world"},
        "failurePolicy": {"constant": {"interval": "3s", "maxRetries": 5}},
    }


async def test_get_unknown_job_is_500(scheduler: DaprDouble) -> None:
    response = await scheduler.client().get(f"{JOBS}/missing")
    assert response.status_code == 500
    assert response.json()["errorCode"] == "DAPR_SCHEDULER_GET_JOB"


async def test_jobs_are_scoped_to_the_app_id(scheduler: DaprDouble) -> None:
    await scheduler.client("api").post(f"{JOBS}/same-name", json={"dueTime": "1h", "data": 1})
    assert (await scheduler.client("worker").get(f"{JOBS}/same-name")).status_code == 500
    assert (await scheduler.client("worker").post(f"{JOBS}/same-name", json={"dueTime": "1h"})).status_code == 204
    assert sorted(j.app_id for j in await scheduler.jobs()) == ["api", "worker"]


async def test_alpha1_route_is_accepted(scheduler: DaprDouble) -> None:
    client = scheduler.client()
    assert (await client.post("/v1.0-alpha1/jobs/old", json={"dueTime": "1h"})).status_code == 204
    assert (await client.get("/v1.0-alpha1/jobs/old")).json()["dueTime"] == "1h"


async def test_request_errors(scheduler: DaprDouble) -> None:
    client = scheduler.client()
    empty = await client.post(f"{JOBS}/j", json={})
    assert (empty.status_code, empty.json()["errorCode"]) == (400, "DAPR_SCHEDULER_SCHEDULE_EMPTY")
    named = await client.post(f"{JOBS}/j", json={"name": "other", "schedule": "@daily"})
    assert (named.status_code, named.json()["errorCode"]) == (400, "DAPR_SCHEDULER_JOB_NAME")
    bad = await client.post(f"{JOBS}/j", json={"schedule": "every day please"})
    assert (bad.status_code, bad.json()["errorCode"]) == (500, "DAPR_SCHEDULER_SCHEDULE_JOB")
    tz_every = await client.post(f"{JOBS}/j", json={"schedule": "CRON_TZ=Europe/Rome @every 1h"})
    assert tz_every.status_code == 500
    assert (await client.post(f"{JOBS}/j", content=b"{oops")).status_code == 400


async def test_failed_trigger_is_retried_three_times_by_default(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    app.script("/job/j", Reply(500), Reply(500), Reply(500), Reply(500))
    await scheduler.client().post(f"{JOBS}/j", json={"dueTime": "0s"})
    await scheduler.tick()
    for _ in range(5):
        manual_clock.advance(1)  # the default failure policy waits 1 s between attempts
        await scheduler.tick()
    assert [t.status_code for t in scheduler.job_triggers()] == [500, 500, 500, 500]
    assert [t.attempt for t in scheduler.job_triggers()] == [1, 2, 3, 4]
    assert await scheduler.jobs() == []


async def test_retry_succeeds_and_drop_policy_does_not_retry(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    app.script("/job/flaky", Reply(503))
    app.script("/job/fragile", Reply(500))
    client = scheduler.client()
    await client.post(f"{JOBS}/flaky", json={"dueTime": "0s", "failure_policy": {"constant": {"interval": "2s"}}})
    await client.post(f"{JOBS}/fragile", json={"dueTime": "0s", "failure_policy": {"drop": {}}})
    await scheduler.tick()
    manual_clock.advance(2)
    await scheduler.tick()
    assert [r.path for r in app.received if r.path.startswith("/job/")] == ["/job/flaky", "/job/fragile", "/job/flaky"]


async def test_404_from_the_app_is_not_retried(
    scheduler: DaprDouble, app: RecordingApp, manual_clock: ManualClock
) -> None:
    app.script("/job/j", Reply(404))
    await scheduler.client().post(f"{JOBS}/j", json={"dueTime": "0s"})
    await scheduler.tick()
    manual_clock.advance(10)
    await scheduler.tick()
    assert len(app.at("/job/j")) == 1


async def test_background_scheduler_fires_with_the_system_clock(make_double: DoubleFactory, app: RecordingApp) -> None:
    double = await make_double(app=app.app, scheduler_poll_interval=0.01)
    await double.client().post(f"{JOBS}/soon", json={"dueTime": "50ms", "data": {"x": 1}})
    [trigger] = await app.wait_for("/job/soon")
    assert trigger.json() == {"x": 1}
