"""SIGKILL at random points of a write, then a restart: no half-written task, no lost event, no
duplicate occurrence or reminder, and the outbox drains.

The scenario (tests/reliability/crash_scenario.py) runs in a child process that kills itself just
before its N-th SQL statement: in the middle of an API write, of the outbox relay marking events
published, of a worker's handler (reminder ledger, job table, inbox, audit log, the recurrence
worker's next occurrence), of a job firing. The test restarts on the same data, replays the
scenario as a client retries unacknowledged requests (same idempotency keys), and the result
must equal an uninterrupted run, field for field.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from doable.adapters.sql.sqlite_driver import statement_engines
from doable.bootstrap import build
from doable.domain.clock import ManualClock
from doable.usecases.service import TaskService
from tests.reliability import crash_scenario
from tests.reliability.fuzz import SOAK, record

ROOT = Path(__file__).resolve().parents[2]
# The restarted process's clock is this much later than the crashed one's: longer than the
# reminder claim lease (2 min), as a real restart after a crash usually is.
RESTART_TAKES = timedelta(minutes=5)
# Kill points per run; DOABLE_KILL_POINTS=all tries every statement of the scenario (minutes),
# DOABLE_KILL_POINTS=from:N every statement from the N-th on.
POINTS = os.environ.get("DOABLE_KILL_POINTS", "60" if SOAK else "10")


async def run_in_process(
    data_dir: Path, *, count: bool = False, later: timedelta = timedelta(0)
) -> tuple[dict[str, Any], int]:
    clock = ManualClock(crash_scenario.T0 + later)
    runtime = await build(crash_scenario.settings_for(data_dir), clock=clock)
    try:
        counter = crash_scenario.arm(runtime, 0) if count else [0]
        await crash_scenario.scenario(runtime, clock, restarted_after=later)
        return await crash_scenario.outcome(runtime), counter[0]
    finally:
        await runtime.aclose()


def crash_at(data_dir: Path, statement: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability.crash_scenario", str(data_dir), str(statement)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_invariants(state: dict[str, Any]) -> None:
    assert state["unpublished"] == [], "the outbox did not drain"
    assert state["audit_missing"] == [], "an event never reached the audit worker (lost)"
    assert state["audit_per_event"] == [], "an event was audited twice"
    assert state["dead_letters"] == [], state["dead_letters"]
    dues = [(series, due) for (_, _, _, due, series, *_rest) in state["tasks"] if series]
    assert len(dues) == len(set(dues)), "two occurrences of one series on one date"
    assert len(state["series"]) == len({(s, a) for s, a, _ in state["series"]})
    assert all(s == "sent" or s == "skipped" for _, _, s in state["reminders_sent"]), state["reminders_sent"]
    counter = state["counter"][0][1]
    assert all(t[0] <= counter for t in state["tasks"])


async def kill_and_recover(tmp_path: Path, reference: dict[str, Any], points: list[int]) -> int:
    """SIGKILL a run of the scenario before each statement of `points`, restart, compare with the
    reference; how many of the runs were killed."""
    killed = 0
    for point in points:
        data_dir = tmp_path / f"kill-{point}"
        child = crash_at(data_dir, point)
        # The statement count varies a little between runs (how the relay's polls and the
        # workers' lanes interleave), so a point near the end may lie past a run's last one.
        assert child.returncode in (-9, 0), (point, child.returncode, child.stdout[-500:], child.stderr[-2000:])
        killed += child.returncode == -9
        recovered, _ = await run_in_process(data_dir, later=RESTART_TAKES)
        check_invariants(recovered)
        for key in reference:
            if key == "jobs":
                # A crash between dropping a reminder from the ledger and cancelling its job leaves
                # the job behind, by design harmless: when it fires it finds no ledger row (or another
                # time) and sends nothing. Every other job must be there, as in the reference.
                ledger = {(name, fire) for name, _, _, fire in recovered["ledger"]}
                extra = set(recovered["jobs"]) - set(reference["jobs"])
                assert set(reference["jobs"]) <= set(recovered["jobs"]), (point, recovered["jobs"])
                assert not {(name, due) for _, name, due in extra if name.startswith("rem-")} & ledger, (point, extra)
                continue
            assert recovered[key] == reference[key], (point, key, recovered[key], reference[key])
    return killed


# The statements of the batch paths (issue 16): one transaction per batch of events or jobs.
BATCH_STATEMENTS = (
    "INSERT INTO audit_events",  # the audit worker's batch
    "INSERT INTO reminders_sent",  # claiming the reminders that fell due together
    "UPDATE reminders_sent",  # finishing them
    "INSERT INTO notifications",  # the inbox entries of a batch of Reminder Events
    "INSERT INTO processed_messages",  # the batch's dedupe records
    "DELETE FROM scheduled_jobs",  # settling a chunk of fired jobs
    "INSERT INTO scheduled_jobs",  # a batch's jobs
    "INSERT INTO reminder_schedule",  # a batch's ledger rows
    "INSERT INTO series_links",  # a batch's next occurrences (one unit of work for the batch)
)


async def test_a_crash_inside_a_batch_then_a_restart_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill points are the statements of the batch transactions: SIGKILL in the middle of a
    batch (its effects and its records commit together, or not at all), then recover. Every
    statement of the batch of next occurrences is one of them: the kill falls between the first
    completion's successor and the second's, inside their one transaction."""
    clock = ManualClock(crash_scenario.T0)
    runtime = await build(crash_scenario.settings_for(tmp_path / "reference"), clock=clock)
    texts: list[str] = []
    occurrence_batches: list[int] = []
    batch_of_occurrences = TaskService.create_next_occurrences

    async def counted(self: TaskService, completed: Any) -> Any:
        occurrence_batches.append(len(completed))
        return await batch_of_occurrences(self, completed)

    monkeypatch.setattr(TaskService, "create_next_occurrences", counted)
    try:
        assert runtime.sql_engine is not None

        def keep(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            texts.append(" ".join(statement.split()))

        for engine in statement_engines(runtime.sql_engine):
            sa.event.listen(engine, "before_cursor_execute", keep)

        await crash_scenario.scenario(runtime, clock)
        reference = await crash_scenario.outcome(runtime)
    finally:
        await runtime.aclose()
    check_invariants(reference)
    batch_points = [i + 1 for i, text in enumerate(texts) if text.startswith(BATCH_STATEMENTS)]
    assert {p for t in BATCH_STATEMENTS for p in [t] if any(x.startswith(t) for x in texts)} >= {
        "INSERT INTO audit_events",
        "INSERT INTO reminders_sent",
        "INSERT INTO notifications",
        "DELETE FROM scheduled_jobs",
    }
    assert occurrence_batches == [2], occurrence_batches  # the two completions' successors together
    # Inside the batch of next occurrences: at the first successor's link, between the two
    # successors, at the second's link and at its event (the batch's last write).
    links = [i for i, text in enumerate(texts) if text.startswith("INSERT INTO series_links")]
    last = next(i for i in range(links[1], len(texts)) if texts[i].startswith("INSERT INTO outbox"))
    occurrence_points = {p + 1 for p in (links[0], (links[0] + links[1]) // 2, links[1], last)}
    count = len(batch_points) if POINTS == "all" else min(len(batch_points), 12 if SOAK else 6)
    points = sorted(set(random.Random(16).sample(batch_points, count)) | occurrence_points)
    killed = await kill_and_recover(tmp_path, reference, points)
    assert killed >= len(points) * 0.8, (killed, len(points))
    record(
        "test_kill_restart::sigkill_inside_batches",
        batch_statements_in_scenario=len(batch_points),
        sigkills=killed,
        kill_points=points,
        lost_events=0,
        duplicate_occurrences=0,
        duplicate_notifications=0,
    )


async def test_a_crash_at_any_statement_then_a_restart_loses_and_repeats_nothing(tmp_path: Path) -> None:
    reference, statements = await run_in_process(tmp_path / "reference", count=True)
    check_invariants(reference)
    assert [n for (_, n, *_) in reference["notifications"]] == ["Buy oat milk", "Pay rent"]
    every = range(1, statements + 1)
    if POINTS == "all" or POINTS.startswith("from:"):
        points = [p for p in every if p >= int(POINTS.partition(":")[2] or 1)]
    else:
        points = sorted(random.Random(8).sample(every, min(int(POINTS), statements)))
    killed = await kill_and_recover(tmp_path, reference, points)
    if POINTS.isdigit():
        assert killed >= len(points) * 0.8, (killed, len(points))
    record(
        "test_kill_restart::sigkill_at_sql_statements",
        statements_in_scenario=statements,
        sigkills=killed,
        kill_points=points,
        lost_events=0,
        duplicate_occurrences=0,
        duplicate_notifications=0,
    )
