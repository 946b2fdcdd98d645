"""4 (Dapr). Event pipeline in Dapr mode, through the sidecar double: task events from the API's
outbox (bulk publish), through the double's broker (Kafka-style partitions, the chart's
Components and Resiliency), to the audit, recurrence and reminders workers (bulk subscribe).

Two processes, as in a cluster: the double (`python -m bench.events_dapr double ...`, every
sidecar, the broker and the state store over PostgreSQL) and the apps (this process: the API,
served for the workers' service invocations, and the three worker apps, each on its own port and
sidecar). The events are recorded first, then timed from the relay's first publish until every
delivery settled and the outbox is empty (recurrence's successors make more events on the way).
Checked from the consumers' records: every event has exactly one audit entry (none lost, none
duplicated). The CPU time of each process says what share of the time is the double's: it is
Python over PostgreSQL where daprd is Go over Kafka, so the figure is a floor for the apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr

from bench.core import Section
from bench.datagen import PG_DSN
from bench.events import workload
from bench.procs import ROOT, free_port
from doable.platform import topology
from doable.platform.settings import Settings

WORKERS = ("audit", "recurrence", "reminders")
DAPR_TOKEN = "dapr-token-" + "b" * 30
APP_TOKEN = "app-token-" + "b" * 30
JWT = "bench-events-dapr-" + "j" * 40


# -- the double's process ----------------------------------------------------------------------


async def double_main(schema: str, layout: dict[str, Any]) -> None:
    """Serve every sidecar; answer commands on stdin: `subscribe` (the apps are up: read their
    subscriptions), `idle` (wait until every delivery settled), `count` (task events per user)."""
    from tests.dapr_double import DaprDouble
    from tests.dapr_double.manifests import render_chart

    async with (
        DaprDouble(
            app_id=topology.API_APP_ID, dsn=PG_DSN, schema=schema, manifests=render_chart(),
            secrets={topology.SECRET_STORE: {"doable-secrets": {"jwt-secret": JWT}}},
            api_token=DAPR_TOKEN, app_token=APP_TOKEN,
        ) as double,
        contextlib.AsyncExitStack() as stack,
    ):  # fmt: skip
        for app_id, port in layout["sidecars"].items():
            await stack.enter_async_context(double.serve(port, app_id=app_id))
            await double.register_app(app_id, base_url=layout["apps"][app_id], load_subscriptions=False)
        print("READY", flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "subscribe":
                for app_id in layout["apps"]:
                    await double.refresh_subscriptions(app_id)
                print("OK", flush=True)
            elif line == "idle":
                await double.wait_idle(300)
                print("OK", flush=True)
            elif line == "count":
                users = Counter(m["data"]["user_id"] for m in double.published(topology.TASK_EVENTS))
                outcomes = Counter(a.outcome for a in double.deliveries(topic=topology.TASK_EVENTS))
                bulks = len({a.bulk_id for a in double.deliveries(topic=topology.TASK_EVENTS) if a.bulk_id})
                print(json.dumps({"users": users, "outcomes": outcomes, "bulk_requests": bulks}), flush=True)


class DoubleProcess:
    def __init__(self, schema: str, layout: dict[str, Any]) -> None:
        self.schema, self.layout = schema, layout
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.events_dapr", "double", self.schema, json.dumps(self.layout),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await self._expect("READY", 120)

    async def ask(self, command: str, timeout: float = 300) -> str:  # noqa: ASYNC109 - a bound per command
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        return await self._expect(None, timeout)

    async def _expect(self, word: str | None, timeout: float) -> str:  # noqa: ASYNC109
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode().strip()
            if not line and self.process.stdout.at_eof():
                raise RuntimeError("the double's process exited")
            if word is None and (line == "OK" or line.startswith("{")):
                return line
            if word is not None and line.startswith(word):
                return line

    def cpu_seconds(self) -> float:
        assert self.process is not None
        t = psutil.Process(self.process.pid).cpu_times()
        return float(t.user + t.system)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# -- the apps (this process) -------------------------------------------------------------------


async def _serve(app: Any, port: int, *, lifespan: str) -> tuple[Any, asyncio.Task[None]]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan=lifespan)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    return server, task


async def one_run(work: Path, users: int, per_user: int) -> dict[str, Any]:
    from doable.bootstrap import build
    from doable.bootstrap.dapr import worker_transport
    from doable.bootstrap.workers import build_worker_app
    from doable.web.app import create_app

    app_ids = {topology.API_APP_ID: "api", **{topology.WORKER_APP_IDS[w]: w for w in WORKERS}}
    sidecars = {app_id: free_port() for app_id in app_ids}
    ports = {app_id: free_port() for app_id in app_ids}
    layout = {"sidecars": sidecars, "apps": {a: f"http://127.0.0.1:{p}" for a, p in ports.items()}}
    double = DoubleProcess(f"bench_events_dapr_{uuid.uuid4().hex[:8]}", layout)
    await double.start()
    servers: list[tuple[Any, asyncio.Task[None]]] = []
    base = Settings(
        runtime="dapr", data_dir=work, dapr_api_token=SecretStr(DAPR_TOKEN), app_api_token=SecretStr(APP_TOKEN),
        dapr_startup_timeout=30.0, log_level="warning",
    )  # fmt: skip

    def settings_for(app_id: str) -> Settings:
        return base.model_copy(update={"dapr_http_endpoint": f"http://127.0.0.1:{sidecars[app_id]}"})

    runtime = await build(settings_for(topology.API_APP_ID))  # the relay is driven below, not started
    try:
        # The API serves the workers' service invocations (task lookups, next occurrences).
        servers.append(await _serve(create_app(runtime), ports[topology.API_APP_ID], lifespan="off"))
        for name in WORKERS:
            app_id = topology.WORKER_APP_IDS[name]
            transport = await worker_transport(settings_for(app_id), name)
            servers.append(
                await _serve(build_worker_app(settings_for(app_id), name, transport), ports[app_id], lifespan="on")
            )
        await double.ask("subscribe")
        await workload(runtime.service, users, per_user, prefix="evd-user")
        assert runtime.dapr is not None and runtime.history is not None
        recorded = await runtime.outbox.depth()
        cpu_double, cpu_apps, t0 = double.cpu_seconds(), time.process_time(), time.perf_counter()
        while True:
            while await runtime.dapr.outbox.drain():
                pass
            await double.ask("idle")
            if not await runtime.outbox.depth():
                break
        elapsed = time.perf_counter() - t0
        cpu_double, cpu_apps = double.cpu_seconds() - cpu_double, time.process_time() - cpu_apps
        counts = json.loads(await double.ask("count"))
        events = sum(counts["users"].values())
        lost = duplicated = 0
        for user, n in counts["users"].items():
            entries = await runtime.history.list(user, limit=200)
            ids = [e.event_id for e in entries]
            duplicated += len(ids) - len(set(ids))
            lost += max(0, n - len(set(ids)))
        return {
            "recorded_before": recorded,
            "events": events,
            "seconds": elapsed,
            "events_per_s": events / elapsed,
            "deliveries_per_s": events * len(WORKERS) / elapsed,
            "cpu_s_double": cpu_double,
            "cpu_s_apps": cpu_apps,
            "double_cpu_share": cpu_double / max(1e-9, cpu_double + cpu_apps),
            "delivery_outcomes": counts["outcomes"],
            "bulk_requests": counts["bulk_requests"],
            "lost": lost,
            "duplicated": duplicated,
        }
    finally:
        for server, task in reversed(servers):
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 15)
        await runtime.aclose()
        await double.stop()


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs, users, per_user = (1, 10, 20) if quick else (3, 20, 20)
    section.params.update(runs=runs, users=users, adds_per_user=per_user, completes_per_user=per_user // 4)
    results = []
    for r in range(runs):
        res = await one_run(work / f"events-dapr-{r}", users, per_user)
        log(f"[bench]   run {r}: {res['events']} events, {res['events_per_s']:.0f} events/s, "
            f"double's CPU share {res['double_cpu_share']:.0%}")  # fmt: skip
        results.append(res)
        section.figure("throughput", unit="events/s").add_run({"events_per_s": res["events_per_s"], "n": res["events"]})
        section.figure("double_cpu_share", unit="ratio").add_run({"share": res["double_cpu_share"], "n": 1})
    section.info["runs"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results]
    section.target("4", "events lost (all runs)", float(sum(r["lost"] for r in results)), 0, "events", "==")
    section.target("4", "events duplicated (all runs)", float(sum(r["duplicated"] for r in results)), 0, "events", "==")


if __name__ == "__main__":
    if sys.argv[1] == "double":
        asyncio.run(double_main(sys.argv[2], json.loads(sys.argv[3])))
