"""The Deduplicator: a message a consumer handled is not handled again; messages that need no
record (repeating them is harmless) skip the record's two transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doable.domain.clock import ManualClock
from doable.ports.messages import Message, Outcome
from workers.idempotency import Deduplicator, never


class Records:
    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], datetime] = {}
        self.calls = 0

    async def seen(self, consumer: str, message_id: str) -> bool:
        self.calls += 1
        return (consumer, message_id) in self.kept

    async def remember(self, consumer: str, message_id: str, at: datetime) -> None:
        self.calls += 1
        self.kept[(consumer, message_id)] = at

    async def prune(self, before: datetime) -> int:
        old = [k for k, at in self.kept.items() if at < before]
        for k in old:
            del self.kept[k]
        return len(old)


def message(n: int) -> Message:
    return Message(id=f"m{n}", topic="task-events", data={"n": n})


async def test_a_handled_message_is_not_handled_again_and_a_failed_one_is() -> None:
    records, handled = Records(), []
    outcomes = iter([Outcome.RETRY, Outcome.SUCCESS, Outcome.SUCCESS])

    async def handler(m: Message) -> Outcome:
        handled.append(m.id)
        return next(outcomes)

    wrapped = Deduplicator(records, ManualClock(datetime(2026, 11, 27, tzinfo=UTC)), ttl=timedelta(days=7)).wrap(
        "audit-task-events", handler
    )
    assert [await wrapped(message(1)) for _ in range(3)] == [Outcome.RETRY, Outcome.SUCCESS, Outcome.SUCCESS]
    assert handled == ["m1", "m1"]  # retried after RETRY, skipped once it succeeded
    assert set(records.kept) == {("audit-task-events", "m1")}


async def test_messages_that_need_no_record_reach_the_handler_every_time_without_one() -> None:
    records, handled = Records(), []

    async def handler(m: Message) -> Outcome:
        handled.append(m.id)
        return Outcome.SUCCESS

    dedupe = Deduplicator(records, ManualClock(datetime(2026, 11, 27, tzinfo=UTC)), ttl=timedelta(days=7))
    idempotent = dedupe.wrap("reminders-task-events", handler, needs_record=never)
    only_odd = dedupe.wrap("recurrence-task-events", handler, needs_record=lambda m: m.data["n"] % 2 == 1)
    for wrapped in (idempotent, idempotent, only_odd, only_odd):
        for n in (1, 2):
            await wrapped(message(n))
    assert handled == ["m1", "m2", "m1", "m2", "m1", "m2", "m2"]  # the odd one once, by its record
    assert set(records.kept) == {("recurrence-task-events", "m1")}
