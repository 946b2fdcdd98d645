"""6. Footprint: cold start of `doable serve` to ready (fresh data dir each time), RSS of the API
process idle, RSS under 50 concurrent chat streams (the scripted-chat server: `doable serve`'s app
with an instant model), and what the worker processes import (no agent/ChatKit stack)."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2

from bench.chat import add_message, chat_client, check, new_thread, turn
from bench.core import Section, Timer, summarize
from bench.procs import ROOT, auth, doable_serve, sample_rss, scripted_chat_serve, token


async def _warm(base: str) -> None:
    async with httpx2.AsyncClient(base_url=base, headers=auth(token("fp-user")), timeout=30) as http:
        for i in range(20):
            r = await http.post("/api/tasks", json={"title": f"warm {i}", "tags": ["work"]})
            r.raise_for_status()
            (await http.get("/api/tasks", params={"search": "warm"})).raise_for_status()


async def _streams(served: Any, n: int, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(served, stop))
    totals = Timer()
    errors = 0
    deadline = time.perf_counter() + seconds

    async def user(i: int) -> None:
        nonlocal errors
        async with chat_client(served, f"fp-chat-{i}") as http:
            thread = await new_thread(http)
            while time.perf_counter() < deadline:
                try:
                    _, end, events = await turn(http, add_message(thread, f"add task {i}"))
                    check(events)
                    totals.add_seconds(end)
                except Exception:
                    errors += 1

    await asyncio.gather(*(user(i) for i in range(n)))
    stop.set()
    rss = await sampler
    return {
        "rss_peak_mb": max(rss),
        "rss_median_mb": statistics.median(rss),
        "turns": summarize(totals.samples),
        "errors": errors,
    }


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    starts = 3
    streams, seconds = (50, 5.0) if quick else (50, 10.0)
    section.params.update(cold_starts=starts, concurrent_chat_streams=streams, stream_seconds=seconds)
    for i in range(starts):
        served = doable_serve(work / f"cold-{i}")
        try:
            served.start()
            cold = served.ready_after_s or float("nan")
            await _warm(served.base)
            await asyncio.sleep(2.0)
            section.figure("cold_start", unit="s").add_run({"ready_s": cold})
            section.figure("rss_idle", unit="MB").add_run({"rss_mb": served.rss_mb()})
        finally:
            served.stop()
    with scripted_chat_serve(work / "chat-streams") as served:
        async with chat_client(served, "fp-warm") as http:
            check((await turn(http, add_message(await new_thread(http), "warm up")))[2])
        idle = served.rss_mb()
        res = await _streams(served, streams, seconds)
        section.figure("rss_chat_streams", unit="MB").add_run(
            {"peak_mb": res["rss_peak_mb"], "median_mb": res["rss_median_mb"]}
        )
        section.info["chat_server_rss_idle_mb"] = round(idle, 1)
        section.info["turns_under_50_streams_ms"] = {k: round(v, 1) for k, v in res["turns"].items()}
        section.info["stream_errors"] = res["errors"]
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bench.worker_probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    worker = (
        json.loads(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else {"error": probe.stderr[-2000:]}
    )
    section.info["worker_probe"] = worker
    # Issue 19 tightened item 6's first two limits (3 s and 300 MB before).
    section.target(
        "6", "cold start of doable serve to ready (median)", section.figures["cold_start"].median("ready_s"), 2.0, "s"
    )
    section.target("6", "RSS idle (API process)", section.figures["rss_idle"].median("rss_mb"), 200.0, "MB")
    section.target(
        "6",
        f"RSS peak under {streams} concurrent chat streams",
        section.figures["rss_chat_streams"].median("peak_mb"),
        300.0,
        "MB",
    )
    forbidden = worker.get("forbidden_loaded")
    section.target(
        "6",
        "agent/ChatKit modules loaded by worker processes",
        float(len(forbidden)) if forbidden is not None else None,
        0,
        "modules",
        "==",
    )
    if res["errors"]:
        section.target("6", "chat stream errors under load", float(res["errors"]), 0, "errors", "==")
