"""Mixed load in Dapr mode: 50 concurrent users on a real `doable serve` for 10 s (60 s with
DOABLE_SOAK=1), and a SIGKILL of the *reminders worker* process half-way, restarted at once,
while the API keeps serving.

The apps run as `dapr run` starts them: `doable serve`, `doable worker reminders` and `doable
worker notifications` (it writes the inbox that GET /api/notifications reads) are real
processes, DOABLE_RUNTIME=dapr, each told only where its own sidecar is. The sidecar double
(tests/dapr_double, over PostgreSQL, on real time) plays the three sidecars on real ports, the
broker, the Jobs API scheduler and the state store. Reminders are due 1 s to the end of the run,
so many fall due while the worker is dead; what then happens is Dapr's:

* the job trigger to the dead app fails and follows the job's failure policy: Doable sets none,
  so Dapr's default applies (3 retries, 1 s apart), after which the job is dropped;
* task-events deliveries to the dead app are retried (the resiliency policy's inbound retries,
  here a constant 0.5 s back-off, 20 attempts);
* the `reminder-sweep` cron input binding (dapr-components/*/reminder-sweep.yaml, `@every 1s`
  here) POSTs /reminder-sweep to the app; a tick while the app is down is lost. The test plays
  that binding (the double has no bindings of its own, only `trigger_binding`);
* a reminder the killed process had claimed but not finished is sent again by the sweeper once
  the claim's lease ends (3 s here), with the same event id, which the inbox deduplicates.

Afterwards: every reminder of every acknowledged task is in its user's inbox exactly once (zero
lost, zero duplicates), and the error rate of the users' requests is reported (the API never
went down, so it should be about zero). Clients behave as in test_load.py (same `Client`), in a
process of their own (`run_users`): the load generator is no part of the sidecars it loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import signal
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx2
import pytest

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.messaging import DaprPublisher
from doable.adapters.dapr.outbox import DaprOutbox
from doable.adapters.dapr.reminders import PENDING_SHARDS, pending_key
from doable.platform import topology
from doable.platform.auth import mint
from tests.conftest import PG_DSN, vacuum_database
from tests.dapr_double import DaprDouble
from tests.dapr_double.manifests import render_chart
from tests.reliability.fuzz import SOAK, record
from tests.reliability.test_load import (
    WRITES,
    Client,
    Stats,
    _account,
    answer_every_write,
    lateness,
    percentile_ms,
)
from tests.servers import DOABLE, clean_env, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

USERS = 50
SECONDS = 60.0 if SOAK else 10.0
SECRET = "load-dapr-secret-" + "D" * 40
DAPR_TOKEN = "dapr-token-" + "l" * 30
APP_TOKEN = "app-token-" + "l" * 30
REMINDERS = topology.WORKER_APP_IDS["reminders"]
NOTIFICATIONS = topology.WORKER_APP_IDS["notifications"]
SWEEP_EVERY = 1.0  # the cron binding's schedule (production: @every 1m)
CLAIM_LEASE = 3.0  # DOABLE_REMINDER_CLAIM_LEASE_SECONDS below
# A reminder due this shortly before the SIGKILL may have been claimed by the worker that died
# (sent by the sweeper once the lease ends): it belongs to the kill window, as in test_load.py.
KILL_MARGIN = 1.0
SETTINGS = {
    "DOABLE_RUNTIME": "dapr",
    "DAPR_API_TOKEN": DAPR_TOKEN,
    "APP_API_TOKEN": APP_TOKEN,
    "DOABLE_DAPR_STARTUP_TIMEOUT": "20",
    "DOABLE_OUTBOX_POLL_SECONDS": "0.2",
    "DOABLE_REMINDER_SWEEP_GRACE_SECONDS": "1",
    # A reminder being sent at the SIGKILL stays claimed by the dead process; the sweeper sends
    # it once the claim's lease ends (default 2 min; short here so the test need not wait).
    "DOABLE_REMINDER_CLAIM_LEASE_SECONDS": "3",
}


@dataclass
class AppProcess:
    """One Dapr app's process (`doable serve`, `doable worker NAME`), with its log in a file;
    SIGKILLed and restarted on the same port, as a container restart does."""

    app_id: str
    args: list[str]
    log_path: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start (or restart) and wait (at most 30 s) until /readyz answers 200."""
        assert self.process is None or self.process.returncode is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *DOABLE, *self.args, "--port", str(self.port),
                env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        async with httpx2.AsyncClient(timeout=1) as http:
            with anyio.fail_after(30):
                while True:
                    if self.process.returncode is not None:
                        raise AssertionError(f"{self.args} exited:\n{self.log()[-3000:]}")
                    with contextlib.suppress(httpx2.HTTPError):
                        if (await http.get(f"{self.base}/readyz")).status_code == 200:
                            return
                    await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            with anyio.fail_after(10):
                await self.process.wait()
        except TimeoutError:
            await self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, object]]:
        """The JSON log lines whose event is `name` (a line cut short by the SIGKILL is skipped)."""
        found = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event") == name:
                    found.append(entry)
        return found


@dataclass
class UsersRan:
    """What the users' process hands back: the request statistics, and per user the reminders
    acknowledged (title -> fire time) and when each was acknowledged."""

    stats: Stats
    reminders: dict[str, dict[str, datetime]]
    acknowledged: dict[str, dict[str, datetime]]


def run_users(base: str, until: float) -> UsersRan:
    """The 50 users, in a process of their own (the load generator is not part of the sidecars:
    sharing the double's event loop would add its own work to every sidecar call). They run
    until `until` (time.monotonic, the same clock in every process), then retry every
    unanswered write until it is answered."""
    return asyncio.run(_users(base, until))


async def _users(base: str, until: float) -> UsersRan:
    stats = Stats()
    clients = [
        Client(user, _user_http(base, user), stats, random.Random(n))
        for n, user in enumerate(f"user{n}" for n in range(USERS))
    ]

    async def user_loop(client: Client) -> None:
        while time.monotonic() < until:
            await client.step(until)

    try:
        await asyncio.gather(*(user_loop(c) for c in clients))
        await answer_every_write(clients)
    finally:
        for c in clients:
            await c.http.aclose()
    return UsersRan(stats, {c.user: c.reminders for c in clients}, {c.user: c.acknowledged for c in clients})


def _user_http(base: str, user: str) -> httpx2.AsyncClient:
    token = mint(SECRET, user_id=user, issuer="doable", audience="doable", ttl_seconds=3600)
    return httpx2.AsyncClient(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"})


@dataclass
class Cluster:
    double: DaprDouble
    apps: dict[str, AppProcess]
    sweeps: Counter[str] = field(default_factory=Counter)

    @property
    def api(self) -> AppProcess:
        return self.apps[topology.API_APP_ID]

    async def cron_binding(self) -> None:
        """The `reminder-sweep` cron input binding: POST /reminder-sweep every SWEEP_EVERY seconds;
        a tick the app does not answer is lost (daprd logs it and waits for the next)."""
        while True:
            try:
                response = await self.double.trigger_binding(REMINDERS, topology.REMINDER_SWEEP_BINDING)
                self.sweeps["answered" if response.status_code < 300 else f"status_{response.status_code}"] += 1
            except httpx2.TransportError:
                self.sweeps["app_unreachable"] += 1
            await asyncio.sleep(SWEEP_EVERY)

    async def quiescent(self, sidecar: DaprClient) -> bool:
        """Nothing left that could still send a reminder: the API's outbox is relayed, every
        published event delivered, the ledger has no reminder left to send (its pending index
        is empty: a claim of the killed process stays there until the sweeper sends it), no job
        is left, and what those sends published is delivered too."""
        if await DaprOutbox(sidecar, topology.STATE_STORE, DaprPublisher(sidecar)).depth():
            return False
        try:
            await self.double.wait_idle(1.0)
            shards = await sidecar.get_bulk(topology.STATE_STORE, [pending_key(n) for n in range(PENDING_SHARDS)])
            if any(item.value.get("jobs") for item in shards.values()) or await self.double.jobs(REMINDERS):
                return False
            await self.double.wait_idle(1.0)
        except TimeoutError:
            return False
        return True


@pytest.fixture
async def cluster(pg_schema: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    if SOAK:
        vacuum_database()
    secrets = {topology.SECRET_STORE: {"doable-secrets": {"jwt-secret": SECRET}}}
    async with (
        DaprDouble(
            app_id=topology.API_APP_ID,
            dsn=PG_DSN,
            schema=pg_schema,
            # The manifests that ship (the chart's Components, Configuration and Resiliency), at
            # their real timing: inbound retries, dead letters and breakers as daprd applies them.
            manifests=render_chart(),
            secrets=secrets,
            api_token=DAPR_TOKEN,
            app_token=APP_TOKEN,
            # Real time: the scheduler triggers jobs as they fall due (SystemClock, auto tick),
            # with Dapr's default job failure policy (3 retries, 1 s apart).
            job_retry_interval=1.0,
            drop_schema_on_close=False,  # pg_schema drops it
        ) as double,
        contextlib.AsyncExitStack() as stack,
    ):
        apps: dict[str, AppProcess] = {}
        for app_id, args in (
            (topology.API_APP_ID, ["serve"]),
            (REMINDERS, ["worker", "reminders"]),
            (NOTIFICATIONS, ["worker", "notifications"]),
        ):
            sidecar = await stack.enter_async_context(double.serve(app_id=app_id))
            env = clean_env(tmp_path / app_id)
            for name in ("DAPR_HTTP_ENDPOINT", "DAPR_HTTP_PORT", "DAPR_API_TOKEN", "APP_API_TOKEN"):
                env.pop(name, None)  # each app finds its sidecar from what the test passes, only
            env.update(SETTINGS, DAPR_HTTP_PORT=sidecar.rsplit(":", 1)[1])
            apps[app_id] = app = AppProcess(app_id, args, tmp_path / f"{app_id}.log", env)
            await double.register_app(app_id, base_url=app.base, load_subscriptions=False)
        try:
            await asyncio.gather(*(app.start() for app in apps.values()))
            for app_id in apps:
                await double.refresh_subscriptions(app_id)  # daprd reads them once the app is up
            cluster = Cluster(double, apps)
            cron = asyncio.create_task(cluster.cron_binding())
            try:
                yield cluster
            finally:
                cron.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cron
        finally:
            await asyncio.gather(*(app.stop() for app in apps.values()))


async def test_mixed_load_with_a_worker_sigkill_midway_loses_and_duplicates_no_reminder(cluster: Cluster) -> None:
    worker = cluster.apps[REMINDERS]
    sidecar = DaprClient(
        "http://127.0.0.1:3500",
        api_token=DAPR_TOKEN,
        transport=httpx2.ASGITransport(app=cluster.double.sidecar_app(REMINDERS)),
    )
    began, began_at = time.monotonic(), datetime.now(UTC)
    until = began + SECONDS
    kill_at = began + SECONDS / 2
    killed = asyncio.Event()
    outage: dict[str, datetime] = {}
    outage_mono: dict[str, float] = {}

    async def killer() -> float:
        await asyncio.sleep(kill_at - time.monotonic())
        await worker.kill()
        killed.set()
        outage["down"] = datetime.now(UTC)
        down = outage_mono["down"] = time.monotonic()
        await worker.start()
        outage["up"] = datetime.now(UTC)
        outage_mono["up"] = time.monotonic()
        return time.monotonic() - down

    clients: list[Client] = []
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as users_process:
        users = asyncio.get_running_loop().run_in_executor(users_process, run_users, cluster.api.base, until)
        try:
            restart_seconds, ran = await asyncio.gather(killer(), users)
            stats = ran.stats
            # The users' accounts, read back from here (the load is over).
            for n in range(USERS):
                user = f"user{n}"
                client = Client(user, _user_http(cluster.api.base, user), stats, random.Random(n))
                client.reminders, client.acknowledged = ran.reminders[user], ran.acknowledged[user]
                clients.append(client)
            # Wait (bounded) until every reminder's time passed and nothing is left to send or
            # deliver (claims of the killed process end with their lease, then the sweeper sends
            # them), so a late duplicate would be counted too; then count.
            last = max((t for c in clients for t in c.reminders.values()), default=datetime.now(UTC))
            with (
                contextlib.suppress(TimeoutError),
                anyio.fail_after(max(0.0, (last - datetime.now(UTC)).total_seconds()) + 45),
            ):
                while True:
                    if datetime.now(UTC) > last and await cluster.quiescent(sidecar):
                        break
                    await asyncio.sleep(0.5)
            lost, duplicated, unexpected, late = await _account(clients, last)
        finally:
            for c in clients:
                await c.http.aclose()
            await sidecar.aclose()

    expected = sum(len(c.reminders) for c in clients)
    due_while_down = sum(
        1 for c in clients for t in c.reminders.values() if outage.get("down", last) <= t <= outage.get("up", last)
    )
    triggers = cluster.double.job_triggers(REMINDERS)
    failed_jobs = {t.name for t in triggers if not t.succeeded}
    dropped_jobs = failed_jobs - {t.name for t in triggers if t.succeeded}
    sent_by = Counter(str(e.get("source")) for e in worker.events("reminder.sent"))
    latencies = sorted(stats.latencies)
    # The kill-and-restart window (test_load.py's): from shortly before the SIGKILL to the
    # restarted worker's readiness plus the claim lease. What fell due in it waits for the restart
    # (job retries, the sweeper) or for the lease of the claim the dead worker held: no pipeline
    # speed makes up for that. Issue 16's target (p99 <= 2 s in Dapr mode) is for the others.
    window = (outage["down"] - timedelta(seconds=KILL_MARGIN), outage["up"] + timedelta(seconds=CLAIM_LEASE))
    outside = [r for r in late if not window[0] <= r.due <= window[1]]
    calm = [c for c in stats.calls if c.ended < outage_mono["down"] or c.started > outage_mono["up"]]
    failed = sum(stats.failed.values())
    figures = {
        "users": USERS,
        "seconds": SECONDS,
        "worker_sigkills": 1,
        "worker_restart_seconds": round(restart_seconds, 2),
        "worker_killed_at_s": round(outage_mono["down"] - began, 1),
        "requests": stats.total,
        "failed_requests": failed,
        "error_rate": round(failed / max(1, stats.total), 4),
        "requests_per_second": round(stats.total / SECONDS, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 1) if latencies else None,
        "reminders_expected": expected,
        "reminders_lost": lost,
        "reminders_duplicated": duplicated,
        **lateness([r.seconds for r in late]),
        "reminders_outside_kill_window": len(outside),
        **lateness([r.seconds for r in outside], "outside_window_"),
        "outside_window_due_before_acknowledged": sum(1 for r in outside if r.due < r.acknowledged),
        **lateness([r.after_acknowledged for r in outside], "outside_window_after_ack_"),
        # Where the late ones are: the worst lateness of the reminders due in each 10 s of the run.
        "late_max_s_by_due_10s": {
            f"{int(b * 10)}s": round(
                max(r.seconds for r in late if (r.due - began_at) // timedelta(seconds=10) == b), 1
            )
            for b in sorted({(r.due - began_at) // timedelta(seconds=10) for r in late})
        },
        "requests_outside_kill_window": len(calm),
        "error_rate_outside_kill_window": round(sum(1 for c in calm if not c.ok) / max(1, len(calm)), 4),
        "write_p95_ms_outside_kill_window": percentile_ms(calm, WRITES, 0.95),
        "reminders_unexpected": unexpected,
        "reminders_due_while_worker_down": due_while_down,
        "job_triggers_failed": sum(1 for t in triggers if not t.succeeded),
        "jobs_retried_after_a_failed_trigger": len(failed_jobs - dropped_jobs),
        "jobs_dropped_after_retries": len(dropped_jobs),
        "reminders_sent_by_job": sent_by["job"],
        "reminders_sent_by_sweeper": sent_by["sweep"],
        "sweeps": dict(cluster.sweeps),
        "by_operation": dict(stats.ok),
        "failed_by_operation": dict(stats.failed),
    }
    record("test_load_dapr::mixed_load_with_worker_sigkill", **figures)
    print(figures)
    assert killed.is_set()
    assert expected >= 10, figures  # the load really scheduled reminders
    assert (lost, duplicated, unexpected) == (0, 0, 0), figures
    if SOAK:
        # Issue 16's target: the API never went down, and no request fails outside the kill window.
        assert figures["error_rate_outside_kill_window"] == 0, figures
