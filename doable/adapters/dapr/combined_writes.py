"""Read-modify-writes of state documents that many callers of one process share (the reminder
ledger's pending shards), combined: while one transaction is on its way, the writes that arrive
queue up, and the next transaction carries them all, each applied in arrival order to the same
documents (a later write sees what an earlier one changed). All of a transaction's writes commit
together or not at all, exactly as each would alone.

So a burst of writes costs a few transactions instead of one each, and this process's writes
never conflict with one another: before, each batch of task events, jobs or a sweep changed some
of the same 32 shards at the same time, the losers re-read and tried again while the database held
row locks for the winner, and under load a batch ran out of attempts. Writers in other processes
(replicas) still meet through the ETags (`optimistic`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.documents import StateTxn, optimistic
from doable.domain.errors import Unavailable

Work = Callable[[StateTxn], Awaitable[None]]


@dataclass(frozen=True)
class _Write:
    work: Work
    reads: dict[str, Any]  # the documents the work reads, each with its default
    done: asyncio.Future[None]


class CombinedWrites:
    def __init__(self, client: DaprClient, store: str) -> None:
        self._client = client
        self._store = store
        self._queue: list[_Write] = []
        self._turn = asyncio.Lock()
        self._running: set[asyncio.Task[None]] = set()

    async def write(self, work: Work, reads: dict[str, Any] | None = None) -> None:
        """Apply `work` in a transaction, with the writes queued meanwhile. `reads` (optional)
        lets the documents of all of them be read in one bulk read."""
        mine = _Write(work, reads or {}, asyncio.get_running_loop().create_future())
        self._queue.append(mine)
        async with self._turn:
            if not mine.done.done():
                batch, self._queue = self._queue, []
                # Shielded: a caller that goes away must not strand the others' writes.
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                await asyncio.shield(task)
        await mine.done

    async def _run(self, batch: list[_Write]) -> None:
        try:
            await optimistic(self._client, self._store, _combined(batch))
        except Unavailable as exc:
            # The outcome may be unknown (the transaction may still commit): each caller hears so,
            # as it would have alone.
            _settle(batch, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch, exc)
                return
            # One write's failure must not fail the others: each again on its own.
            for write in batch:
                try:
                    await optimistic(self._client, self._store, _combined([write]))
                except Exception as one:
                    _settle([write], one)
                else:
                    _settle([write], None)
            return
        _settle(batch, None)


def _combined(batch: list[_Write]) -> Work:
    async def work(txn: StateTxn) -> None:
        reads: dict[str, Any] = {}
        for write in batch:
            reads.update(write.reads)
        await txn.preload(reads)
        for write in batch:
            await write.work(txn)

    return work


def _settle(batch: list[_Write], error: BaseException | None) -> None:
    for write in batch:
        if write.done.done():
            continue  # its caller was cancelled
        if error is None:
            write.done.set_result(None)
        else:
            write.done.set_exception(error)
