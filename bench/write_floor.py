"""The raw-driver floor of the MCP item's operations (issue 19): the rows `TaskService` writes for
an add and a complete, and the page a list reads, as hand-written SQL in one transaction each,
through the bare drivers (sqlite3 on the calling thread, aiosqlite on its own thread).

Same statements as the service issues (captured with SQLAlchemy's `before_cursor_execute`): the
profile read, the task count against the limit, the per-user id counter, the task row, its JSON
row and tags, the outbox row with the event's JSON, the undo token (after pruning expired ones).
The JSON is built with `json.dumps` from dicts of the same shape. It runs on a database of its
own with the same schema (Alembic), so that nothing relays its outbox rows."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from doable.adapters.sql.engine import create_engine, migrate

Rows = list[tuple[Any, ...]]
Query = Callable[[str, Sequence[Any]], Awaitable[Rows]]
Many = Callable[[str, list[tuple[Any, ...]]], Awaitable[None]]
DAY_US = 86_400_000_000
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


async def prepare(path: Path) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


class Floor:
    """One driver's connection and the three operations on it."""

    def __init__(self, query: Query, many: Many) -> None:
        self._q = query
        self._many = many

    async def add(self, user: str, new: dict[str, Any]) -> int:
        now = _now_us()
        await self._q("BEGIN IMMEDIATE", ())
        await self._q("SELECT data FROM profiles WHERE user_id = ?", (user,))
        await self._q("SELECT count(*) FROM tasks WHERE user_id = ?", (user,))
        (task_id,) = (
            await self._q(
                "INSERT INTO user_counters (user_id, last_task_id) VALUES (?, 1) ON CONFLICT (user_id) "
                "DO UPDATE SET last_task_id = last_task_id + 1 RETURNING last_task_id",
                (user,),
            )
        )[0]
        task = {
            "user_id": user, "task_id": task_id, "title": new["title"], "description": "", "completed": False,
            "completed_at": None, "priority": new["priority"], "tags": list(new["tags"]), "due_at": new["due"] + ":00Z",
            "due_date": None, "reminders": [], "recurrence": None, "series_id": None, "series_values": None,
            "created_at": _iso(now), "updated_at": _iso(now), "version": 1,
        }  # fmt: skip
        due_us = int(datetime.fromisoformat(task["due_at"]).timestamp() * 1e6)
        await self._write_task(task, due_us, now, insert=True)
        await self._undo(
            user, now, {"label": "add", "steps": [{"kind": "task", "task_id": task_id, "before": None, "after": 1}]}
        )
        await self._q("COMMIT", ())
        return int(task_id)

    async def complete(self, user: str, task_id: int) -> None:
        now = _now_us()
        await self._q("BEGIN IMMEDIATE", ())
        (data,) = (await self._q("SELECT data FROM task_data WHERE user_id = ? AND task_id = ?", (user, task_id)))[0]
        before = json.loads(data)
        task = before | {
            "completed": True,
            "completed_at": _iso(now),
            "updated_at": _iso(now),
            "version": before["version"] + 1,
        }
        due_us = int(datetime.fromisoformat(task["due_at"]).timestamp() * 1e6)
        await self._write_task(task, due_us, now, insert=False)
        steps = [{"kind": "task", "task_id": task_id, "before": before, "after": task["version"]}]
        await self._undo(user, now, {"label": "complete", "steps": steps})
        await self._q("COMMIT", ())

    async def list(self, user: str, limit: int) -> list[dict[str, Any]]:
        await self._q("BEGIN", ())
        await self._q("SELECT data FROM profiles WHERE user_id = ?", (user,))
        (total,) = (await self._q("SELECT count(*) FROM tasks WHERE user_id = ?", (user,)))[0]
        rows = await self._q(
            "SELECT d.data FROM tasks t JOIN task_data d ON d.user_id = t.user_id AND d.task_id = t.task_id "
            "WHERE t.user_id = ? ORDER BY t.created_us, t.task_id LIMIT ?",
            (user, limit + 1),
        )
        await self._q("COMMIT", ())
        assert total >= len(rows) - 1
        return [json.loads(data) for (data,) in rows[:limit]]

    async def _write_task(self, task: dict[str, Any], due_us: int, now: int, *, insert: bool) -> None:
        user, task_id = task["user_id"], task["task_id"]
        rank = {"low": 1, "medium": 2, "high": 3}[task["priority"]]
        title = task["title"]
        row = (
            task["completed"],
            rank,
            title.casefold(),
            f"{title.casefold()}\n",
            due_us,
            None,
            now,
            now,
            None,
            task["version"],
        )
        data = json.dumps(task, separators=(",", ":"))
        if insert:
            (pk,) = (
                await self._q(
                    "INSERT INTO tasks (completed, priority_rank, title_key, search_text, due_us, due_date, created_us, "
                    "updated_us, series_id, version, user_id, task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING pk",
                    (*row, user, task_id),
                )
            )[0]
            await self._q("INSERT INTO task_data (user_id, task_id, data) VALUES (?, ?, ?)", (user, task_id, data))
        else:
            (pk,) = (
                await self._q(
                    "UPDATE tasks SET completed = ?, priority_rank = ?, title_key = ?, search_text = ?, due_us = ?, "
                    "due_date = ?, created_us = ?, updated_us = ?, series_id = ?, version = ? "
                    "WHERE user_id = ? AND task_id = ? AND version = ? RETURNING pk",
                    (*row, user, task_id, task["version"] - 1),
                )
            )[0]
            await self._q("UPDATE task_data SET data = ? WHERE user_id = ? AND task_id = ?", (data, user, task_id))
            await self._q("DELETE FROM task_tags WHERE task_pk = ?", (pk,))
        await self._many(
            "INSERT INTO task_tags (task_pk, tag, user_id) VALUES (?, ?, ?)", [(pk, t, user) for t in task["tags"]]
        )
        event_type = "created" if insert else "completed"
        status = "completed" if task["completed"] else "pending"
        event_id = str(uuid.uuid4())
        event = {
            "event_id": event_id, "event_type": event_type, "task_id": task_id,
            "task_data": task | {"status": status, "all_day": False}, "user_id": user, "timestamp": _iso(now),
            "trace_id": None, "actor": None, "cause": None,
        }  # fmt: skip
        await self._q(
            "INSERT INTO outbox (event_id, user_id, task_id, created_us, published, attempts, payload) "
            "VALUES (?, ?, ?, ?, 0, 0, ?)",
            (event_id, user, task_id, now, json.dumps(event, separators=(",", ":"))),
        )

    async def _undo(self, user: str, now: int, record: dict[str, Any]) -> None:
        await self._q("DELETE FROM action_tokens WHERE user_id = ? AND expires_us < ?", (user, now))
        await self._q(
            "INSERT INTO action_tokens (user_id, token, kind, created_us, expires_us, data) VALUES (?, ?, 'undo', ?, ?, ?)",
            (user, "u-" + secrets.token_urlsafe(12), now, now + DAY_US, json.dumps(record)),
        )


def sqlite3_floor(path: Path) -> tuple[Floor, Callable[[], Awaitable[None]]]:
    """sqlite3 on the calling thread: the statements' own cost, nothing else."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)

    async def query(sql: str, params: Sequence[Any]) -> Rows:
        return conn.execute(sql, params).fetchall()

    async def many(sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(sql, rows)

    async def close() -> None:
        conn.close()

    return Floor(query, many), close


async def aiosqlite_floor(path: Path) -> tuple[Floor, Callable[[], Awaitable[None]]]:
    """aiosqlite: each statement (and its fetch) a hop to the driver's thread and back."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        await conn.execute(pragma)

    async def query(sql: str, params: Sequence[Any]) -> Rows:
        return [tuple(row) for row in await conn.execute_fetchall(sql, params)]

    async def many(sql: str, rows: list[tuple[Any, ...]]) -> None:
        await conn.executemany(sql, rows)

    return Floor(query, many), conn.close


def _now_us() -> int:
    return time.time_ns() // 1000


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")
