"""Stopping the event-driven half always ends its loops, even when a wake-up (a commit's nudge, a newly
scheduled job) arrives in the same turns of the event loop as the cancellation. On Python 3.11,
`asyncio.wait_for` returned the wake-up and dropped the cancellation in that case, so `stop()` (and
every shutdown, and test teardown) waited forever."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from doable.bootstrap import build
from doable.platform.settings import Settings
from doable.ports.messages import Job

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("ticks", range(6))
async def test_stop_ends_the_loops_when_a_wake_up_meets_the_cancel(settings: Settings, ticks: int) -> None:
    runtime = await build(settings)
    try:
        delivery = runtime.delivery
        assert delivery is not None
        await delivery.start()
        await asyncio.sleep(0.1)  # the relay and the job loop reach their idle wait
        due = runtime.clock.now() + timedelta(days=1)
        await delivery.jobs.schedule_many("doable-test", [Job(name="later", due_at=due, data={})])
        delivery.relay.nudge()
        for _ in range(ticks):
            await asyncio.sleep(0)
        # A bound that only a hang exceeds: stopping takes milliseconds.
        async with asyncio.timeout(10):
            await delivery.stop()
        assert not delivery.running
    finally:
        await runtime.aclose()
