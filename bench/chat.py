"""3. Chat turn overhead: ChatKit `threads.add_user_message` turns against `doable serve`'s app with
an instant scripted model that makes one tool call (add_task over MCP) and answers (bench/chat_server.py).
Time to first byte and to the end of the SSE stream, measured at the client over loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2

from bench.core import Section, Timer, summarize
from bench.procs import Served, auth, scripted_chat_serve, token


def text_input(text: str) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "quoted_text": None,
        "inference_options": {"tool_choice": None, "model": None},
    }


async def turn(http: httpx2.AsyncClient, body: dict[str, Any]) -> tuple[float, float, list[dict[str, Any]]]:
    """(seconds to first byte, seconds to end, events) of one streamed ChatKit request."""
    t0 = time.perf_counter()
    first: float | None = None
    buf = bytearray()
    async with http.stream("POST", "/chatkit", content=json.dumps({"metadata": {}, **body}).encode()) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"chatkit answered {resp.status_code}: {(await resp.aread())[:300]!r}")
        async for chunk in resp.aiter_raw():
            if first is None:
                first = time.perf_counter() - t0
            buf += chunk
    end = time.perf_counter() - t0
    events = [json.loads(line[6:]) for line in buf.decode().splitlines() if line.startswith("data: ")]
    return first or end, end, events


def check(events: list[dict[str, Any]]) -> None:
    errors = [e for e in events if e.get("type") == "error"]
    answers = [e for e in events if e.get("type") == "thread.item.done" and e["item"]["type"] == "assistant_message"]
    if errors or not answers:
        raise RuntimeError(f"turn failed: {errors or events[-3:]}")


async def new_thread(http: httpx2.AsyncClient) -> str:
    _, _, events = await turn(http, {"type": "threads.create", "params": {"input": text_input("add a task")}})
    check(events)
    return str(next(e for e in events if e["type"] == "thread.created")["thread"]["id"])


def add_message(thread_id: str, text: str) -> dict[str, Any]:
    return {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": text_input(text)}}


def chat_client(served: Served, user: str) -> httpx2.AsyncClient:
    headers = {**auth(token(user)), "Content-Type": "application/json"}
    return httpx2.AsyncClient(base_url=served.base, headers=headers, timeout=60)


async def run(section: Section, *, quick: bool, work: Path, log: Any = print) -> None:
    runs, turns = (3, 10) if quick else (5, 20)
    section.params.update(runs=runs, turns_per_run=turns, model="scripted: 1 tool call (add_task via MCP) + answer")
    with scripted_chat_serve(work / "chat") as served:
        async with chat_client(served, "chat-warmup") as http:
            thread = await new_thread(http)
            for _ in range(3):
                check((await turn(http, add_message(thread, "add milk")))[2])
        for r in range(runs):
            ttfb, total = Timer(), Timer()
            async with chat_client(served, f"chat-{r}") as http:
                thread = await new_thread(http)
                for i in range(turns):
                    first, end, events = await turn(http, add_message(thread, f"add task number {i}"))
                    check(events)
                    ttfb.add_seconds(first)
                    total.add_seconds(end)
            section.figure("turn.ttfb").add_run(summarize(ttfb.samples))
            section.figure("turn.total").add_run(summarize(total.samples))
    section.target(
        "3", "chat turn p95, to the end of the stream", section.figures["turn.total"].median("p95"), 100.0, "ms"
    )
    section.info["ttfb_note"] = "first SSE bytes (thread.item.done for the user message) come before the model runs"
