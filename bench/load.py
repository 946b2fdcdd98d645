"""7. Load: 50 concurrent users, a realistic mix against REST and MCP of one `doable serve`
(embedded SQLite), for 60 s; a small asyncio driver (httpx2 + the MCP SDK client), each user
pausing 50-250 ms between actions (think time). Throughput, latency per action and overall
(per 20-second window; the figure is the median of the windows), errors (must be none)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.core import Section, summarize
from bench.procs import auth, doable_serve, token
from bench.words import WORDS

# (action, weight): people and agents mostly read.
MIX = (
    ("rest_list_pending", 25), ("rest_search", 15), ("rest_get", 10), ("rest_add", 12), ("rest_complete", 8),
    ("rest_update", 5), ("mcp_list_tasks", 12), ("mcp_add_task", 8), ("mcp_complete_task", 5),
)  # fmt: skip
THINK = (0.05, 0.25)


class User:
    def __init__(self, base: str, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self.http = httpx2.AsyncClient(base_url=base, headers=auth(token(name)), timeout=30)
        self.mcp_http = httpx2.AsyncClient(headers=auth(token(name)), timeout=30)
        self.base = base
        self.ids: list[int] = []
        self.mcp: Client | None = None

    async def start(self, seed_tasks: int) -> None:
        for i in range(seed_tasks):
            await self.add(i)
        self.mcp = Client(streamable_http_client(f"{self.base}/mcp", http_client=self.mcp_http))
        await self.mcp.__aenter__()

    async def close(self) -> None:
        if self.mcp is not None:
            await self.mcp.__aexit__(None, None, None)
        await self.http.aclose()
        await self.mcp_http.aclose()

    def _new(self, i: int) -> dict[str, Any]:
        words = self.rng.sample(WORDS[:120], 3)
        return {
            "title": " ".join(words).capitalize(),
            "priority": self.rng.choice(["none", "low", "medium", "high"]),
            "tags": self.rng.sample(["work", "home", "errands", "health"], self.rng.randint(0, 2)),
            "due": f"2027-0{self.rng.randint(1, 9)}-{self.rng.randint(1, 28):02d}T{self.rng.randint(8, 18):02d}:00",
        }

    async def add(self, i: int) -> None:
        r = await self.http.post("/api/tasks", json=self._new(i))
        r.raise_for_status()
        body = r.json()
        self.ids.append(body["id"] if "id" in body else body["task_id"])

    async def act(self, action: str) -> None:
        rng, http = self.rng, self.http
        if action == "rest_list_pending":
            (await http.get("/api/tasks", params={"status": "pending", "sort": "due", "limit": 20})).raise_for_status()
        elif action == "rest_search":
            (await http.get("/api/tasks", params={"search": rng.choice(WORDS[:120])})).raise_for_status()
        elif action == "rest_get":
            (await http.get(f"/api/tasks/{rng.choice(self.ids)}")).raise_for_status()
        elif action == "rest_add":
            await self.add(0)
        elif action == "rest_complete":
            (await http.post(f"/api/tasks/{rng.choice(self.ids)}/complete")).raise_for_status()
        elif action == "rest_update":
            r = await http.patch(f"/api/tasks/{rng.choice(self.ids)}", json={"priority": rng.choice(["low", "high"])})
            r.raise_for_status()
        else:
            assert self.mcp is not None
            if action == "mcp_list_tasks":
                res = await self.mcp.call_tool("list_tasks", {"status": "pending", "limit": 20})
            elif action == "mcp_add_task":
                res = await self.mcp.call_tool("add_task", self._new(0))
                if not res.is_error:
                    self.ids.append(res.structured_content["task_id"])
            else:
                res = await self.mcp.call_tool("complete_task", {"task_id": rng.choice(self.ids)})
            if res.is_error:
                raise RuntimeError(f"{action}: {res.content}")


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    users_n, seconds, windows = (50, 10.0, 2) if quick else (50, 60.0, 3)
    section.params.update(
        users=users_n, seconds=seconds, windows=windows, think_time_s=list(THINK), mix=dict(MIX), seed_tasks_per_user=20
    )
    actions = [a for a, _ in MIX]
    weights = [w for _, w in MIX]
    samples: list[tuple[float, str, float, bool]] = []  # (time since start, action, ms, ok)
    errors: dict[str, int] = {}
    with doable_serve(work / "load") as served:
        users = [User(served.base, f"load-user-{i:02d}", random.Random(i)) for i in range(users_n)]
        await asyncio.gather(*(u.start(20) for u in users))
        t_start = time.perf_counter()
        deadline = t_start + seconds

        async def loop(u: User) -> None:
            while True:
                await asyncio.sleep(u.rng.uniform(*THINK))
                if time.perf_counter() >= deadline:
                    return
                action = u.rng.choices(actions, weights)[0]
                t0 = time.perf_counter()
                ok = True
                try:
                    await u.act(action)
                except Exception as exc:
                    ok = False
                    key = f"{action}: {type(exc).__name__}: {str(exc)[:120]}"
                    errors[key] = errors.get(key, 0) + 1
                samples.append((t0 - t_start, action, (time.perf_counter() - t0) * 1000, ok))

        try:
            await asyncio.gather(*(loop(u) for u in users))
        finally:
            await asyncio.gather(*(u.close() for u in users), return_exceptions=True)
        section.info["server_rss_after_mb"] = round(served.rss_mb(), 1)
    span = seconds / windows
    for w in range(windows):
        part = [s for s in samples if w * span <= s[0] < (w + 1) * span]
        lat = [s[2] for s in part]
        overall = summarize(lat, (50, 95, 99))
        overall["rps"] = len(part) / span
        overall["errors"] = sum(1 for s in part if not s[3])
        section.figure("overall").add_run(overall)
        for action in actions:
            section.figure(f"action.{action}").add_run(summarize([s[2] for s in part if s[1] == action], (50, 95)))
    total = len(samples)
    n_errors = sum(1 for s in samples if not s[3])
    section.info["requests"] = total
    section.info["errors"] = errors
    section.figure("overall").note = f"{total} requests in {seconds:.0f}s"
    section.target("7", "load: error rate", n_errors / total if total else None, 0.0, "ratio", "==")
    section.info["throughput_rps"] = round(total / seconds, 1)
