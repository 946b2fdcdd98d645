"""1. MCP tool latency: add_task, list_tasks (a page of 50 of the user's 100 tasks), complete_task
through the MCP SDK client over streamable HTTP to a real `doable serve` (embedded SQLite), and the
same operations as direct TaskService calls in this process (its own embedded runtime, relay and
workers running, as in serve). Each run uses a fresh user: 100 adds, 30 lists, 100 completes. The
same calls are also made as bare JSON-RPC POSTs (no SDK client), which isolates the server's share,
as hand-written SQL through the bare drivers (`bench/write_floor.py`): the raw floor of the
same rows, against which the direct service call is compared (issue 19); and through the same SDK
client to an MCP server that only answers (`bench/mcp_floor.py`): the SDK and HTTP's own floor."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from pydantic import SecretStr

from bench import mcp_floor, write_floor
from bench.core import Section, Timer, ratio_figure, summarize
from bench.procs import JWT_SECRET, Served, auth, doable_serve, token
from doable.bootstrap import build
from doable.platform.settings import Settings
from doable.usecases.inputs import ListRequest, NewTask

OPS = ("add_task", "list_tasks", "complete_task")
PAGE = 50  # list_tasks' page, issue 19's target
FLOORS = ("raw_sqlite3", "raw_aiosqlite")


def _new(i: int) -> dict[str, Any]:
    return {
        "title": f"Benchmark task {i} review the quarterly report",
        "priority": ("low", "medium", "high")[i % 3],
        "tags": ["work", "bench"] if i % 2 else ["home"],
        "due": f"2026-12-{1 + i % 28:02d}T09:00",
    }


async def _http_run(
    client: Client, n_tasks: int, n_lists: int, last: dict[str, CallToolResult] | None = None
) -> dict[str, Timer]:
    """The calls through the SDK client; `last` gets each tool's last result."""
    timers = {op: Timer() for op in OPS}
    last = {} if last is None else last
    ids = []
    for i in range(n_tasks):
        with timers["add_task"]:
            r = last["add_task"] = await client.call_tool("add_task", _new(i))
        assert not r.is_error, r.content
        ids.append(r.structured_content["task_id"])
    for _ in range(n_lists):
        with timers["list_tasks"]:
            r = last["list_tasks"] = await client.call_tool("list_tasks", {"limit": PAGE})
        assert not r.is_error and len(r.structured_content["tasks"]) == min(PAGE, n_tasks), r.content
    for tid in ids:
        with timers["complete_task"]:
            r = last["complete_task"] = await client.call_tool("complete_task", {"task_id": tid})
        assert not r.is_error, r.content
    return timers


async def _floor_http_runs(
    work: Path, tools: list[Any], last: dict[str, CallToolResult], runs: int, size: tuple[int, int]
) -> list[dict[str, Timer]]:
    """The same client calls to an MCP server that only answers, with `doable serve`'s tools and
    its last results (bench/mcp_floor.py); the first run warms up and is dropped."""
    path = work / "mcp_floor.json"
    path.write_text(json.dumps(mcp_floor.fixtures(tools, last)))
    out = []
    with Served(["-m", "bench.mcp_floor", str(path)], work / "floor_serve") as served:
        for r in range(runs + 1):
            async with httpx2.AsyncClient(timeout=30) as http:
                async with Client(streamable_http_client(f"{served.base}/mcp", http_client=http)) as client:
                    timers = await _http_run(client, *size)  # the canned page holds `size`'s tasks
            if r:
                out.append(timers)
    return out


_JSONRPC_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}


async def _raw_run(http: httpx2.AsyncClient, url: str, n_tasks: int, n_lists: int) -> dict[str, Timer]:
    """The same tools/call requests as bare JSON-RPC POSTs: the server's share, without the SDK
    client's work (it validates every structured result against the tool's output schema)."""
    timers = {op: Timer() for op in OPS}
    seq = 0

    async def call(name: str, arguments: dict[str, Any], timer: Timer) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        body = {"jsonrpc": "2.0", "id": seq, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        with timer:
            r = await http.post(url, json=body, headers=_JSONRPC_HEADERS)
        result = r.json()["result"]
        assert not result.get("isError"), result
        return result["structuredContent"]

    ids = [(await call("add_task", _new(i), timers["add_task"]))["task_id"] for i in range(n_tasks)]
    for _ in range(n_lists):
        assert len((await call("list_tasks", {"limit": PAGE}, timers["list_tasks"]))["tasks"]) == min(PAGE, n_tasks)
    for tid in ids:
        await call("complete_task", {"task_id": tid}, timers["complete_task"])
    return timers


async def _direct_run(runtime: Any, user: str, n_tasks: int, n_lists: int) -> dict[str, Timer]:
    service = runtime.service
    timers = {op: Timer() for op in OPS}
    ids = []
    for i in range(n_tasks):
        with timers["add_task"]:
            task = await service.add(user, NewTask(**_new(i)))
        ids.append(task.task_id)
    for _ in range(n_lists):
        with timers["list_tasks"]:
            page, _ = await service.list(user, ListRequest(limit=PAGE))
        assert len(page.tasks) == min(PAGE, n_tasks)
    for tid in ids:
        with timers["complete_task"]:
            await service.complete(user, tid)
    return timers


async def _floor_run(floor: write_floor.Floor, user: str, n_tasks: int, n_lists: int) -> dict[str, Timer]:
    timers = {op: Timer() for op in OPS}
    ids = []
    for i in range(n_tasks):
        with timers["add_task"]:
            ids.append(await floor.add(user, _new(i)))
    for _ in range(n_lists):
        with timers["list_tasks"]:
            page = await floor.list(user, PAGE)
        assert len(page) == min(PAGE, n_tasks)
    for tid in ids:
        with timers["complete_task"]:
            await floor.complete(user, tid)
    return timers


async def _floor_runs(work: Path, user: str, size: tuple[int, int]) -> dict[str, dict[str, Timer]]:
    out = {}
    for name, make in (("raw_sqlite3", write_floor.sqlite3_floor), ("raw_aiosqlite", write_floor.aiosqlite_floor)):
        made = make(work / "floor.db")
        floor, close = made if isinstance(made, tuple) else await made
        try:
            out[name] = await _floor_run(floor, f"{user}-{name}", *size)
        finally:
            await close()
    return out


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs = 1 if quick else 3
    n_tasks, n_lists = (100, 5) if quick else (100, 30)
    section.params.update(runs=runs, tasks_per_run=n_tasks, lists_per_run=n_lists, list_page=PAGE)
    settings = Settings(
        data_dir=work / "direct", jwt_secret=SecretStr(JWT_SECRET), log_format="json", log_level="warning"
    )
    runtime = await build(settings)
    await runtime.start()
    await write_floor.prepare(work / "floor.db")
    served = doable_serve(work / "serve")
    last: dict[str, CallToolResult] = {}
    tools: list[Any] = []
    try:
        served.start()
        section.info["serve_ready_s"] = round(served.ready_after_s or 0, 3)
        for r in range(runs + 1):  # run 0 (smaller) warms up both paths and is not reported
            user = f"mcp-bench-{r}-{int(time.time())}"
            size = (n_tasks, n_lists) if r else (20, 5)
            async with httpx2.AsyncClient(headers=auth(token(user)), timeout=30) as http:
                async with Client(streamable_http_client(f"{served.base}/mcp", http_client=http)) as client:
                    http_t = await _http_run(client, *size, last=last)
                    tools = tools or (await client.list_tools()).tools
                raw_t = await _raw_run(http, f"{served.base}/mcp", *size) if r else None
            direct_t = await _direct_run(runtime, user, *size)
            floor_t = await _floor_runs(work, user, size)
            if raw_t is None:
                continue
            for op in OPS:
                section.figure(f"{op}.http_mcp").add_run(summarize(http_t[op].samples, (50, 95, 99)))
                section.figure(f"{op}.http_jsonrpc_server_share").add_run(summarize(raw_t[op].samples, (50, 95, 99)))
                section.figure(f"{op}.direct").add_run(summarize(direct_t[op].samples, (50, 95, 99)))
                for floor in FLOORS:
                    section.figure(f"{op}.{floor}").add_run(summarize(floor_t[floor][op].samples, (50, 95, 99)))
        served.stop()
        for timers in await _floor_http_runs(work, tools, last, runs, (n_tasks, n_lists)):
            for op in OPS:
                section.figure(f"{op}.sdk_floor").add_run(summarize(timers[op].samples, (50, 95, 99)))
    finally:
        served.stop()
        await runtime.aclose()
    for op in OPS:
        http_f, direct_f = section.figures[f"{op}.http_mcp"], section.figures[f"{op}.direct"]
        raw_f = section.figures[f"{op}.http_jsonrpc_server_share"]
        ratio = ratio_figure(section, f"{op}.overhead_ratio", http_f, direct_f)
        raw_ratio = ratio_figure(section, f"{op}.server_share_ratio", raw_f, direct_f)
        section.target("1", f"{op} p95 over HTTP+MCP (SDK client)", http_f.median("p95"), 10.0, "ms")
        section.target("1", f"{op} HTTP+MCP / direct (p50, same run)", ratio.median("p50"), 3.0, "x")
        floor_ratio = ratio_figure(section, f"{op}.service_raw_ratio", direct_f, section.figures[f"{op}.raw_sqlite3"])
        aio_ratio = ratio_figure(
            section, f"{op}.service_raw_aiosqlite_ratio", direct_f, section.figures[f"{op}.raw_aiosqlite"]
        )
        if op != "list_tasks":
            section.target(
                "19", f"{op} direct service / raw-SQL floor (p50, same run)", floor_ratio.median("p50"), 5.0, "x"
            )
        section.info[f"{op}_raw_floor"] = {
            floor: {k: round(section.figures[f"{op}.{floor}"].median(k), 3) for k in ("p50", "p95")} for floor in FLOORS
        } | {
            "service_raw_sqlite3_p50": round(floor_ratio.median("p50"), 2),
            "service_raw_aiosqlite_p50": round(aio_ratio.median("p50"), 2),
        }
        sdk_f = section.figures[f"{op}.sdk_floor"]
        sdk_ratio = ratio_figure(section, f"{op}.sdk_floor_ratio", sdk_f, direct_f)
        # What the ratio target leaves Doable once the SDK and HTTP have taken their floor.
        section.info[f"{op}_sdk_floor"] = {
            "p50_ms": round(sdk_f.median("p50"), 2),
            "p95_ms": round(sdk_f.median("p95"), 2),
            "floor_over_direct_p50": round(sdk_ratio.median("p50"), 2),
            "doable_above_floor_p50_ms": round(http_f.median("p50") - sdk_f.median("p50"), 2),
        }
        section.info[f"{op}_server_share"] = {
            "p50_ms": round(raw_f.median("p50"), 2),
            "p95_ms": round(raw_f.median("p95"), 2),
            "ratio_to_direct_p50": round(raw_ratio.median("p50"), 2),
        }
