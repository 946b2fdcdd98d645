"""Mixed load on a real `doable serve`: 50 concurrent users for 10 s (60 s with DOABLE_SOAK=1),
and a SIGKILL of the process (its embedded workers with it) half-way, restarted at once.

Afterwards: every reminder of every acknowledged task arrives exactly once (zero lost, zero
duplicates), and the error rate (requests that failed while the process was down) is reported.
Clients do what a careful client does: writes carry an idempotency key, and a write that got no
answer is retried with the same key until it is answered.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from doable.auth import mint
from tests.reliability.fuzz import SOAK, record
from tests.reliability.processes import Server, server

pytestmark = pytest.mark.slow

USERS = 50
SECONDS = 60.0 if SOAK else 10.0
SECRET = "load-test-secret-" + "L" * 40
BACKOFF = 0.25
STALL = 30.0  # seconds without a new reminder arriving: what is missing then is lost


@dataclass
class Stats:
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.ok.values()) + sum(self.failed.values())


@dataclass
class Client:
    user: str
    http: httpx2.AsyncClient
    stats: Stats
    rng: random.Random
    reminders: dict[str, datetime] = field(default_factory=dict)  # acknowledged: title -> fire time
    unanswered: dict[str, dict[str, object]] = field(default_factory=dict)  # idempotency key -> body
    scratch: list[int] = field(default_factory=list)

    async def call(self, op: str, method: str, path: str, **kwargs: object) -> httpx2.Response | None:
        started = time.monotonic()
        try:
            response = await self.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx2.HTTPError:
            self.stats.failed[op] += 1
            await asyncio.sleep(BACKOFF)  # a client backs off rather than spin on a dead server
            return None
        self.stats.latencies.append(time.monotonic() - started)
        if response.status_code >= 500:
            self.stats.failed[op] += 1
            await asyncio.sleep(BACKOFF)
            return None
        self.stats.ok[op] += 1
        return response

    async def add_reminder(self, fire_at: datetime) -> None:
        title = f"{self.user} reminder {uuid.uuid4().hex[:8]}"
        body = {"title": title, "due": (fire_at + timedelta(hours=1)).isoformat(), "reminders": [{"at": fire_at.isoformat()}]}
        key = uuid.uuid4().hex
        self.unanswered[key] = body
        await self.retry(key)

    async def retry(self, key: str) -> None:
        body = self.unanswered[key]
        response = await self.call("add_reminder", "POST", "/api/tasks", json=body, headers={"Idempotency-Key": key})
        if response is not None and response.status_code == 201:
            self.unanswered.pop(key)
            self.reminders[str(body["title"])] = datetime.fromisoformat(str(body["reminders"][0]["at"]))  # type: ignore[index]

    async def step(self, until: float) -> None:
        roll = self.rng.random()
        if roll < 0.25:
            seconds = self.rng.uniform(1.0, max(1.5, until - time.monotonic() + 1.0))
            await self.add_reminder(datetime.now(UTC) + timedelta(seconds=seconds))
        elif roll < 0.35:
            response = await self.call("add", "POST", "/api/tasks", json={"title": "scratch", "tags": ["load"]})
            if response is not None and response.status_code == 201:
                self.scratch.append(response.json()["id"])
        elif roll < 0.6:
            await self.call("list", "GET", "/api/tasks", params={"limit": 20})
        elif roll < 0.7:
            await self.call("search", "GET", "/api/tasks", params={"search": "reminder", "tags": "load"})
        elif self.scratch and roll < 0.8:
            await self.call("update", "PATCH", f"/api/tasks/{self.rng.choice(self.scratch)}", json={"priority": "high"})
        elif self.scratch and roll < 0.88:
            await self.call("complete", "POST", f"/api/tasks/{self.rng.choice(self.scratch)}/complete")
        elif self.scratch and roll < 0.93:
            tid = self.scratch.pop(self.rng.randrange(len(self.scratch)))
            await self.call("delete", "DELETE", f"/api/tasks/{tid}")
        else:
            await self.call("notifications", "GET", "/api/notifications", params={"limit": 5})
        for key in list(self.unanswered):
            await self.retry(key)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    srv = server(
        tmp_path,
        DOABLE_JWT_SECRET=SECRET,
        DOABLE_OUTBOX_POLL_SECONDS="0.5",
        DOABLE_REMINDER_SWEEP_SECONDS="1",
        DOABLE_REMINDER_SWEEP_GRACE_SECONDS="1",
        # A reminder being sent at the SIGKILL is claimed by the dead process; the sweeper sends
        # it once the claim's lease ends (default 2 min; short here so the test need not wait).
        DOABLE_REMINDER_CLAIM_LEASE_SECONDS="3",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_mixed_load_with_a_sigkill_midway_loses_and_duplicates_no_reminder(served: Server) -> None:
    stats = Stats()
    limits = httpx2.Limits(max_connections=USERS * 2, max_keepalive_connections=USERS)
    async with httpx2.AsyncClient(base_url=served.base, timeout=10, limits=limits):
        clients = []
        for n in range(USERS):
            user = f"user{n}"
            token = mint(SECRET, user_id=user, issuer="doable", audience="doable", ttl_seconds=3600)
            http = httpx2.AsyncClient(
                base_url=served.base, timeout=10, headers={"Authorization": f"Bearer {token}"}, limits=limits
            )
            clients.append(Client(user, http, stats, random.Random(n)))
        began = time.monotonic()
        until = began + SECONDS
        kill_at = began + SECONDS / 2
        killed = asyncio.Event()

        async def user_loop(client: Client) -> None:
            while time.monotonic() < until:
                await client.step(until)

        async def killer() -> float:
            await asyncio.sleep(kill_at - time.monotonic())
            served.kill()
            killed.set()
            down = time.monotonic()
            await asyncio.to_thread(served.start)
            return time.monotonic() - down

        try:
            results = await asyncio.gather(killer(), *(user_loop(c) for c in clients))
            downtime = results[0]
            await answer_every_write(clients)
            # Wait for every reminder's time, then for the sweeper (1 s) and its grace (1 s).
            last = max((t for c in clients for t in c.reminders.values()), default=datetime.now(UTC))
            lost, duplicated, unexpected, late = await _account(clients, last)
        finally:
            for c in clients:
                await c.http.aclose()
    expected = sum(len(c.reminders) for c in clients)
    latencies = sorted(stats.latencies)
    figures = {
        "users": USERS,
        "seconds": SECONDS,
        "sigkills": 1,
        "restart_seconds": round(downtime, 2),
        "requests": stats.total,
        "failed_requests": sum(stats.failed.values()),
        "error_rate": round(sum(stats.failed.values()) / max(1, stats.total), 4),
        "requests_per_second": round(stats.total / SECONDS, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 1) if latencies else None,
        "reminders_expected": expected,
        "reminders_lost": lost,
        "reminders_duplicated": duplicated,
        **lateness(late),
        "by_operation": dict(stats.ok),
        "failed_by_operation": dict(stats.failed),
    }
    record("test_load::mixed_load_with_sigkill", **figures)
    print(figures)
    assert killed.is_set()
    assert expected >= USERS // 5, figures  # the load really scheduled reminders
    assert (lost, duplicated, unexpected) == (0, 0, 0), figures


async def answer_every_write(clients: list[Client], within: float = 30.0) -> None:
    """Retry each write that never got an answer (same idempotency key) until it is answered."""
    deadline = time.monotonic() + within
    while any(c.unanswered for c in clients) and time.monotonic() < deadline:
        for c in clients:
            for key in list(c.unanswered):
                await c.retry(key)
    assert not any(c.unanswered for c in clients), "writes still unanswered after the restart"


async def _account(clients: list[Client], last: datetime) -> tuple[int, int, int, list[float]]:
    """Wait until every reminder arrived, or until none has arrived for STALL seconds (bounded
    by 5 minutes: an overloaded pipeline catches up late, a lost reminder never comes); count
    the lost, the duplicated and the unknown, and how late each one arrived (seconds)."""
    hard_deadline = time.monotonic() + max(0.0, (last - datetime.now(UTC)).total_seconds()) + 300
    delivered, progress_at = -1, time.monotonic()
    while True:
        lost = duplicated = unexpected = 0
        late: list[float] = []
        for c in clients:
            response = await c.http.get("/api/notifications", params={"limit": 200})
            notes = response.json()["notifications"]
            titles = Counter(n["title"] for n in notes)
            lost += sum(1 for t in c.reminders if titles[t] == 0)
            duplicated += sum(n - 1 for n in titles.values() if n > 1)
            unexpected += sum(1 for t in titles if t not in c.reminders)
            late += [
                (datetime.fromisoformat(n["created_at"]) - c.reminders[n["title"]]).total_seconds()
                for n in notes
                if n["title"] in c.reminders
            ]
        now = time.monotonic()
        if len(late) > delivered:
            delivered, progress_at = len(late), now
        if datetime.now(UTC) > last and (lost == 0 or now - progress_at > STALL or now > hard_deadline):
            return lost, duplicated, unexpected, late
        await asyncio.sleep(0.5)


def lateness(late: list[float]) -> dict[str, float | None]:
    """How late the reminders arrived (seconds after their time): median, p95, worst."""
    ordered = sorted(late)
    if not ordered:
        return {"late_p50_s": None, "late_p95_s": None, "late_max_s": None}
    return {
        "late_p50_s": round(statistics.median(ordered), 2),
        "late_p95_s": round(ordered[int(len(ordered) * 0.95)], 2),
        "late_max_s": round(ordered[-1], 2),
    }
