"""`doable worker NAME` as a Dapr app: the routes Dapr calls, answered as Dapr expects, with the
transport ports injected (here: in-memory fakes standing in for the sidecar)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from doable.bootstrap import Runtime
from doable.bootstrap.workers import WorkerTransport, build_worker_app
from doable.cli import main
from doable.domain.errors import Unavailable
from doable.domain.events import EventType, TaskEvent
from doable.domain.task import Task
from doable.platform import topology
from doable.platform.settings import Settings
from doable.ports.messages import Job, Outgoing
from tests.workers.conftest import tasks_of

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    async def publish(
        self, topic: str, data: dict[str, Any], *, key: str, event_id: str, trace_id: str | None = None
    ) -> None:
        if self.down:
            raise Unavailable("sidecar unreachable")
        self.published.append((topic, data))

    async def publish_batch(self, topic: str, entries: Sequence[Outgoing]) -> set[str]:
        for e in entries:
            await self.publish(topic, e.data, key=e.key, event_id=e.event_id, trace_id=e.trace_id)
        return set()


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    async def schedule(self, job: Job) -> None:
        self.jobs[job.name] = job

    async def cancel(self, name: str) -> None:
        self.jobs.pop(name, None)

    async def schedule_many(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            await self.schedule(job)

    async def cancel_many(self, names: Sequence[str]) -> None:
        for name in names:
            await self.cancel(name)


class Tasks:
    def __init__(self, *tasks: Task) -> None:
        self.tasks = {(t.user_id, t.task_id): t for t in tasks}

    async def get(self, user_id: str, task_id: int) -> Task | None:
        return self.tasks.get((user_id, task_id))

    async def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Task]:
        return {k: self.tasks[k] for k in keys if k in self.tasks}


class Occurrences:
    """Stands in for the API's service-invocation endpoint."""

    def __init__(self) -> None:
        self.asked: list[Task] = []

    async def create_next(self, completed: Task) -> Task | None:
        self.asked.append(completed)
        return None

    async def create_next_many(self, completed: Sequence[Task]) -> list[Task | None]:
        return [await self.create_next(t) for t in completed]


class Fakes:
    def __init__(self) -> None:
        self.publisher = FakePublisher()
        self.jobs = FakeJobs()
        self.tasks = Tasks()
        self.occurrences: Occurrences | None = Occurrences()

    def transport(self) -> WorkerTransport:
        async def sidecar() -> None:
            return None

        return WorkerTransport(
            publisher=self.publisher,
            jobs=self.jobs,
            tasks=self.tasks,
            occurrences=self.occurrences,
            checks={"sidecar": sidecar},
        )


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
async def migrated(rt: Runtime, worker_settings: Settings) -> Settings:
    """The database the API migrated (the fixture runtime did); workers only connect to it."""
    return worker_settings


def client_for(settings: Settings, name: str, fakes: Fakes, **kw: Any) -> AsyncIterator[httpx2.AsyncClient]:
    app = build_worker_app(settings, name, fakes.transport(), **kw)

    async def gen() -> AsyncIterator[httpx2.AsyncClient]:
        async with app.router.lifespan_context(app):
            async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://worker") as c:
                yield c

    return gen()


def cloudevent(topic: str, data: dict[str, Any], event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "doable-api",
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "topic": topic,
        "pubsubname": topology.PUBSUB,
        "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
        "data": data,
        **extra,
    }


def task_event(kind: EventType, task: Task) -> dict[str, Any]:
    return TaskEvent.of(kind, task, at=NOW, trace_id=None).model_dump(mode="json")


def a_task(**over: Any) -> Task:
    base: dict[str, Any] = {
        "user_id": "alice",
        "task_id": 7,
        "title": "Dentist",
        "due_at": datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        "reminders": [{"minutes_before": 60}],
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Task.model_validate({**base, **over})


@pytest.mark.parametrize("name", sorted(topology.WORKER_APP_IDS))
async def test_each_worker_subscribes_to_its_topics_with_a_dead_letter_topic(
    name: str, migrated: Settings, fakes: Fakes
) -> None:
    async for c in client_for(migrated, name, fakes):
        subs = (await c.get("/dapr/subscribe")).json()
        app_id = topology.WORKER_APP_IDS[name]
        assert sorted(s["topic"] for s in subs) == sorted(topology.SUBSCRIPTIONS[app_id])
        for s in subs:
            assert s["pubsubname"] == topology.PUBSUB and s["routes"]["default"].startswith("/events/")
            if s["topic"] == topology.DEAD_LETTER:
                assert "deadLetterTopic" not in s  # the dead-letter consumer never feeds its own topic
            else:
                assert s["deadLetterTopic"] == topology.DEAD_LETTER
        assert (await c.get("/healthz")).json() == {"status": "ok", "worker": name}
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "sidecar": "ok"}
        assert (await c.get("/metrics")).status_code == 200


async def test_reminders_worker_schedules_on_events_and_publishes_when_the_job_fires(
    migrated: Settings, fakes: Fakes
) -> None:
    task = a_task()
    fakes.tasks = Tasks(task)
    async for c in client_for(migrated, "reminders", fakes):
        [sub] = (await c.get("/dapr/subscribe")).json()
        answer = await c.post(
            sub["routes"]["default"], json=cloudevent(topology.TASK_EVENTS, task_event(EventType.CREATED, task))
        )
        assert answer.json() == {"status": "SUCCESS"}
        [job] = fakes.jobs.jobs.values()
        assert job.due_at == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

        # Dapr delivers the job's data as the body, sometimes JSON-encoded twice.
        body = json.dumps(json.dumps(job.data))
        fired = await c.post(f"/job/{job.name}", content=body, headers={"content-type": "application/json"})
        assert fired.status_code == 200
        [(topic, reminder)] = fakes.publisher.published
        assert topic == topology.REMINDERS
        assert {k: reminder[k] for k in ("task_id", "title", "user_id", "remind_at")} == {
            "task_id": 7,
            "title": "Dentist",
            "user_id": "alice",
            "remind_at": "2026-11-27T08:00:00Z",
        }
        # Fired again (Dapr retries after a lost answer): nothing more is sent.
        assert (await c.post(f"/job/{job.name}", json=job.data)).status_code == 200
        assert len(fakes.publisher.published) == 1


async def test_a_job_whose_publish_fails_answers_500_so_dapr_retries(migrated: Settings, fakes: Fakes) -> None:
    task = a_task()
    fakes.tasks = Tasks(task)
    fakes.publisher.down = True
    async for c in client_for(migrated, "reminders", fakes):
        await c.post(
            "/events/reminders-task-events", json=cloudevent(topology.TASK_EVENTS, task_event(EventType.CREATED, task))
        )
        [job] = fakes.jobs.jobs.values()
        assert (await c.post(f"/job/{job.name}", json=job.data)).status_code == 500
        fakes.publisher.down = False
        assert (await c.post(f"/job/{job.name}", json=job.data)).status_code == 200
        assert len(fakes.publisher.published) == 1


async def test_sweeper_binding_answers_the_probe_and_the_tick(migrated: Settings, fakes: Fakes) -> None:
    async for c in client_for(migrated, "reminders", fakes):
        path = f"/{topology.REMINDER_SWEEP_BINDING}"
        assert (await c.options(path)).status_code == 200
        assert (await c.post(path, json={})).status_code == 200


async def test_event_routes_answer_success_retry_or_drop(migrated: Settings, fakes: Fakes, rt: Runtime) -> None:
    task = a_task(reminders=[])
    async for c in client_for(migrated, "audit", fakes):
        route = "/events/audit-task-events"
        event = cloudevent(topology.TASK_EVENTS, task_event(EventType.CREATED, task), event_id="evt-1")
        assert (await c.post(route, json=event)).json() == {"status": "SUCCESS"}
        assert (await c.post(route, json=event)).json() == {"status": "SUCCESS"}  # redelivery: recorded once
        assert rt.history is not None and len(await rt.history.list("alice", task_id=7)) == 1

        encoded = cloudevent(topology.TASK_EVENTS, {}, event_id="evt-2")
        del encoded["data"]
        encoded["data_base64"] = base64.b64encode(json.dumps(task_event(EventType.UPDATED, task)).encode()).decode()
        assert (await c.post(route, json=encoded)).json() == {"status": "SUCCESS"}
        assert len(await rt.history.list("alice", task_id=7)) == 2

        assert (await c.post(route, json={"no": "id"})).json() == {"status": "DROP"}
        assert (await c.post(route, json=cloudevent(topology.TASK_EVENTS, {"event_type": "?"}))).json() == {
            "status": "DROP"
        }
        unknown = await c.post("/events/nobody", json=event)
        assert unknown.status_code == 404


async def test_recurrence_worker_asks_for_the_next_occurrence_on_completion_only(
    migrated: Settings, fakes: Fakes
) -> None:
    task = a_task(recurrence={"rule": "FREQ=DAILY", "start": NOW.isoformat()}, series_id="alice:7", completed=True)
    async for c in client_for(migrated, "recurrence", fakes):
        for kind in (EventType.UPDATED, EventType.COMPLETED):
            event = cloudevent(topology.TASK_EVENTS, task_event(kind, task))
            assert (await c.post("/events/recurrence-task-events", json=event)).json() == {"status": "SUCCESS"}
    assert fakes.occurrences is not None and fakes.occurrences.asked == [task]


async def test_recurrence_worker_needs_its_occurrence_port(migrated: Settings, fakes: Fakes) -> None:
    fakes.occurrences = None
    with pytest.raises(ValueError, match="occurrences"):
        build_worker_app(migrated, "recurrence", fakes.transport())


async def test_app_token_is_required_when_configured(migrated: Settings, fakes: Fakes) -> None:
    secured = migrated.model_copy(update={"app_api_token": SecretStr("s3cret")})
    async for c in client_for(secured, "audit", fakes):
        assert (await c.get("/dapr/subscribe")).status_code == 401
        assert (await c.get("/dapr/subscribe", headers={"dapr-api-token": "s3cret"})).status_code == 200
        assert (await c.get("/healthz")).status_code == 200  # probes need no token


def test_worker_command_refuses_to_start_in_embedded_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOABLE_RUNTIME", "embedded")
    with pytest.raises(SystemExit) as exited:
        main(["worker", "reminders"])
    assert "run inside `doable serve`" in str(exited.value)


async def test_embedded_runtime_runs_all_four_workers_and_the_live_subscriptions(rt: Runtime) -> None:
    assert rt.delivery is not None
    by_app: dict[str, set[str]] = {topology.API_APP_ID: {s.topic for s in rt.live.subscriptions()}}
    for worker in rt.delivery.workers.values():
        by_app[worker.app_id] = {s.topic for s in worker.subscriptions}
    assert by_app == {app: set(topics) for app, topics in topology.SUBSCRIPTIONS.items()}
    assert await tasks_of(rt, "alice") == []
