"""The reminders worker's ledger: which reminders have jobs, and which firings were claimed or sent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from doable.adapters.sql.mapping import table_of
from doable.adapters.sql.transactions import from_micros, transaction, upsert
from doable.adapters.sql.worker_schema import ReminderScheduleRow, ReminderSentRow
from doable.domain.query import micros
from doable.domain.reminders import ScheduledReminder

schedule_t = table_of(ReminderScheduleRow)
sent_t = table_of(ReminderSentRow)


def _reminder(row: Any) -> ScheduledReminder:
    return ScheduledReminder(
        job_name=row.job_name,
        user_id=row.user_id,
        task_id=row.task_id,
        reminder_key=row.reminder_key,
        fire_at=from_micros(row.fire_us),
    )


class SqlReminderLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def for_task(self, user_id: str, task_id: int) -> dict[str, ScheduledReminder]:
        stmt = sa.select(schedule_t).where(schedule_t.c.user_id == user_id, schedule_t.c.task_id == task_id)
        async with transaction(self._engine, write=False) as conn:
            return {r.job_name: _reminder(r) for r in (await conn.execute(stmt)).all()}

    async def get(self, job_name: str) -> ScheduledReminder | None:
        async with transaction(self._engine, write=False) as conn:
            row = (await conn.execute(sa.select(schedule_t).where(schedule_t.c.job_name == job_name))).first()
        return _reminder(row) if row is not None else None

    async def put(self, reminder: ScheduledReminder) -> None:
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, schedule_t).values(
                job_name=reminder.job_name,
                user_id=reminder.user_id,
                task_id=reminder.task_id,
                reminder_key=reminder.reminder_key,
                fire_us=micros(reminder.fire_at),
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[schedule_t.c.job_name], set_={"fire_us": stmt.excluded.fire_us}
                )
            )

    async def remove(self, job_names: Iterable[str]) -> None:
        names = list(job_names)
        if names:
            async with transaction(self._engine) as conn:
                await conn.execute(sa.delete(schedule_t).where(schedule_t.c.job_name.in_(names)))

    async def overdue(
        self, *, fired_before: datetime, lease_expired_before: datetime, limit: int
    ) -> list[ScheduledReminder]:
        """Reminders due by `fired_before` with no finished firing and no live claim."""
        joined = schedule_t.outerjoin(
            sent_t, sa.and_(sent_t.c.job_name == schedule_t.c.job_name, sent_t.c.fire_us == schedule_t.c.fire_us)
        )
        stmt = (
            sa.select(schedule_t)
            .select_from(joined)
            .where(
                schedule_t.c.fire_us <= micros(fired_before),
                sa.or_(
                    sent_t.c.job_name.is_(None),
                    sa.and_(sent_t.c.state == "sending", sent_t.c.claimed_us < micros(lease_expired_before)),
                ),
            )
            .order_by(schedule_t.c.fire_us)
            .limit(limit)
        )
        async with transaction(self._engine, write=False) as conn:
            return [_reminder(r) for r in (await conn.execute(stmt)).all()]

    async def claim(self, reminder: ScheduledReminder, *, now: datetime, lease_expired_before: datetime) -> bool:
        """Take the firing of `reminder` at its fire time: True for exactly one claimer, unless a
        claim was left unfinished (the process died) for longer than the lease."""
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, sent_t).values(
                job_name=reminder.job_name,
                fire_us=micros(reminder.fire_at),
                user_id=reminder.user_id,
                task_id=reminder.task_id,
                state="sending",
                claimed_us=micros(now),
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[sent_t.c.job_name, sent_t.c.fire_us],
                set_={"claimed_us": stmt.excluded.claimed_us},
                where=sa.and_(sent_t.c.state == "sending", sent_t.c.claimed_us < micros(lease_expired_before)),
            ).returning(sent_t.c.job_name)
            return (await conn.execute(stmt)).first() is not None

    async def finish(self, reminder: ScheduledReminder, state: Literal["sent", "skipped"], at: datetime) -> None:
        async with transaction(self._engine) as conn:
            await conn.execute(
                sa.update(sent_t)
                .where(sent_t.c.job_name == reminder.job_name, sent_t.c.fire_us == micros(reminder.fire_at))
                .values(state=state, done_us=micros(at))
            )

    async def release(self, reminder: ScheduledReminder) -> None:
        """Give a claim back (publishing failed) so the next attempt may take it at once."""
        async with transaction(self._engine) as conn:
            await conn.execute(
                sa.delete(sent_t).where(
                    sent_t.c.job_name == reminder.job_name,
                    sent_t.c.fire_us == micros(reminder.fire_at),
                    sent_t.c.state == "sending",
                )
            )

    async def finished(self, reminder: ScheduledReminder) -> bool:
        stmt = sa.select(sent_t.c.state).where(
            sent_t.c.job_name == reminder.job_name, sent_t.c.fire_us == micros(reminder.fire_at)
        )
        async with transaction(self._engine, write=False) as conn:
            state = (await conn.execute(stmt)).scalar_one_or_none()
        return state in ("sent", "skipped")

    # ---- batches (one statement or transaction for many reminders) ---------------------------

    async def for_tasks(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, ScheduledReminder]]:
        found: dict[tuple[str, int], dict[str, ScheduledReminder]] = {}
        by_user: dict[str, set[int]] = {}
        for user_id, task_id in keys:
            by_user.setdefault(user_id, set()).add(task_id)
        async with transaction(self._engine, write=False) as conn:
            for user_id, ids in by_user.items():
                stmt = sa.select(schedule_t).where(
                    schedule_t.c.user_id == user_id, schedule_t.c.task_id.in_(sorted(ids))
                )
                for r in (await conn.execute(stmt)).all():
                    found.setdefault((r.user_id, r.task_id), {})[r.job_name] = _reminder(r)
        return found

    async def get_many(self, job_names: list[str]) -> dict[str, ScheduledReminder]:
        if not job_names:
            return {}
        stmt = sa.select(schedule_t).where(schedule_t.c.job_name.in_(sorted(set(job_names))))
        async with transaction(self._engine, write=False) as conn:
            return {r.job_name: _reminder(r) for r in (await conn.execute(stmt)).all()}

    async def put_many(self, reminders: list[ScheduledReminder]) -> None:
        if not reminders:
            return
        rows = [
            {
                "job_name": r.job_name,
                "user_id": r.user_id,
                "task_id": r.task_id,
                "reminder_key": r.reminder_key,
                "fire_us": micros(r.fire_at),
            }
            for r in {r.job_name: r for r in reminders}.values()
        ]
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, schedule_t)
            stmt = stmt.on_conflict_do_update(
                index_elements=[schedule_t.c.job_name], set_={"fire_us": stmt.excluded.fire_us}
            )
            await conn.execute(stmt, rows)  # executemany: compiled once, not per batch size

    async def finished_many(self, reminders: list[ScheduledReminder]) -> set[str]:
        """The job names of `reminders` whose firing (at its fire time) was sent or skipped."""
        if not reminders:
            return set()
        wanted = {(r.job_name, micros(r.fire_at)) for r in reminders}
        stmt = sa.select(sent_t.c.job_name, sent_t.c.fire_us).where(
            sent_t.c.job_name.in_(sorted({name for name, _ in wanted})), sent_t.c.state.in_(("sent", "skipped"))
        )
        async with transaction(self._engine, write=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return {r.job_name for r in rows if (r.job_name, r.fire_us) in wanted}

    async def claim_many(
        self, reminders: list[ScheduledReminder], *, now: datetime, lease_expired_before: datetime
    ) -> set[str]:
        """`claim` for many in one statement: the job names this caller now holds."""
        if not reminders:
            return set()
        rows = [
            {
                "job_name": r.job_name,
                "fire_us": micros(r.fire_at),
                "user_id": r.user_id,
                "task_id": r.task_id,
                "state": "sending",
                "claimed_us": micros(now),
            }
            for r in {r.job_name: r for r in reminders}.values()
        ]
        async with transaction(self._engine) as conn:
            stmt = upsert(conn, sent_t)
            stmt = stmt.on_conflict_do_update(
                index_elements=[sent_t.c.job_name, sent_t.c.fire_us],
                set_={"claimed_us": stmt.excluded.claimed_us},
                where=sa.and_(sent_t.c.state == "sending", sent_t.c.claimed_us < micros(lease_expired_before)),
            ).returning(sent_t.c.job_name)
            return set((await conn.execute(stmt, rows)).scalars())  # executemany

    async def finish_many(
        self, reminders: list[ScheduledReminder], state: Literal["sent", "skipped"], at: datetime
    ) -> None:
        if not reminders:
            return
        stmt = (
            sa.update(sent_t)
            .where(sent_t.c.job_name == sa.bindparam("b_job"), sent_t.c.fire_us == sa.bindparam("b_fire"))
            .values(state=state, done_us=micros(at))
        )
        async with transaction(self._engine) as conn:
            await conn.execute(stmt, [{"b_job": r.job_name, "b_fire": micros(r.fire_at)} for r in reminders])

    async def release_many(self, reminders: list[ScheduledReminder]) -> None:
        if not reminders:
            return
        stmt = sa.delete(sent_t).where(
            sent_t.c.job_name == sa.bindparam("b_job"),
            sent_t.c.fire_us == sa.bindparam("b_fire"),
            sent_t.c.state == "sending",
        )
        async with transaction(self._engine) as conn:
            await conn.execute(stmt, [{"b_job": r.job_name, "b_fire": micros(r.fire_at)} for r in reminders])
