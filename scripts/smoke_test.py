#!/usr/bin/env python3
"""Smoke test of a deployed Doable, run by the deploy workflows through `kubectl port-forward`.

1. `/healthz` and `/readyz` answer 200.
2. Through MCP (the official `mcp` SDK client over streamable HTTP, with a bearer token):
   `add_task` creates a task due in an hour with a reminder ~20 s ahead, and `list_tasks` shows it.
3. The reminder is delivered: `GET /api/notifications` is polled until a notification about that
   task appears (reminders worker -> `reminders` topic -> notifications worker -> API).

Usage:
    python scripts/smoke_test.py --base-url http://127.0.0.1:8000 --token "$TOKEN"

Exit status 0 when every step passed; otherwise 1 with the failing step on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


class SmokeFailure(Exception):
    """A step of the smoke test failed."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON-like structure, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _payload(result: Any) -> Any:
    """The structured content of an MCP tool result, or its text content parsed as JSON."""
    if getattr(result, "is_error", False):
        texts = [getattr(block, "text", "") for block in result.content]
        raise SmokeFailure(f"tool error: {' '.join(texts)}")
    if result.structured_content is not None:
        return result.structured_content
    texts = [getattr(block, "text", "") for block in result.content]
    try:
        return json.loads("".join(texts))
    except json.JSONDecodeError:
        return {"text": "".join(texts)}


def _task_id(payload: Any) -> Any:
    for key, value in _walk(payload):
        if key in ("task_id", "id") and isinstance(value, (int, str)):
            return value
    raise SmokeFailure(f"add_task returned no task id: {payload!r}")


async def check_health(http: httpx2.AsyncClient) -> None:
    for path in ("/healthz", "/readyz"):
        response = await http.get(path)
        if response.status_code != 200:
            raise SmokeFailure(f"GET {path} -> {response.status_code}: {response.text[:200]}")
        print(f"ok   GET {path} -> 200")


async def add_and_list(base_url: str, token: str, title: str, remind_in: float) -> Any:
    now = datetime.now(UTC)
    arguments = {
        "title": title,
        "due": _iso(now + timedelta(hours=1)),
        "reminders": [{"at": _iso(now + timedelta(seconds=remind_in))}],
    }
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(f"{base_url}/mcp/", http_client=http)) as mcp:
        tools = {tool.name for tool in (await mcp.list_tools()).tools}
        missing = {"add_task", "list_tasks"} - tools
        if missing:
            raise SmokeFailure(f"MCP server lacks tools {sorted(missing)}; it has {sorted(tools)}")
        created = _payload(await mcp.call_tool("add_task", arguments))
        task_id = _task_id(created)
        print(f"ok   MCP add_task -> task {task_id} with a reminder in {remind_in:.0f} s")
        listed = _payload(await mcp.call_tool("list_tasks", {"status": "pending"}))
        if title not in json.dumps(listed):
            raise SmokeFailure(f"list_tasks does not show {title!r}: {json.dumps(listed)[:500]}")
        print("ok   MCP list_tasks shows the task")
    return task_id


async def wait_for_notification(http: httpx2.AsyncClient, title: str, task_id: Any, patience: float) -> None:
    deadline = time.monotonic() + patience
    last = ""
    while time.monotonic() < deadline:
        response = await http.get("/api/notifications")
        if response.status_code != 200:
            raise SmokeFailure(f"GET /api/notifications -> {response.status_code}: {response.text[:200]}")
        body = response.json()
        for item in body if isinstance(body, list) else [body]:
            text = json.dumps(item)
            if title in text or any(k == "task_id" and str(v) == str(task_id) for k, v in _walk(item)):
                print("ok   reminder delivered: GET /api/notifications shows it")
                return
        last = response.text[:300]
        await asyncio.sleep(3)
    raise SmokeFailure(f"no notification for task {task_id} within {patience:.0f} s; last answer: {last}")


async def run(base_url: str, token: str, remind_in: float, patience: float) -> None:
    base_url = base_url.rstrip("/")
    title = f"smoke {uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=base_url, headers=headers, timeout=15.0) as http:
        await check_health(http)
        task_id = await add_and_list(base_url, token, title, remind_in)
        await wait_for_notification(http, title, task_id, patience)


def _describe(error: BaseException) -> str:
    """The innermost errors of an exception group (anyio task groups wrap the MCP client's)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the API, e.g. through port-forward")
    parser.add_argument("--token", required=True, help="a bearer token (doable token --user smoke)")
    parser.add_argument("--remind-in", type=float, default=20.0, help="seconds until the reminder fires")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the notification")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.base_url, args.token, args.remind_in, args.timeout))
    except SmokeFailure as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        return 1
    except (httpx2.HTTPError, OSError) as error:
        print(f"FAIL cannot reach {args.base_url}: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # any other error fails the smoke test, with its cause
        print(f"FAIL {_describe(error)}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
