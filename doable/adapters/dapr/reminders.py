"""The reminders worker's ledger in the Dapr state store.

    rem:{job}                      the ScheduledReminder a job stands for
    rem-task:{uid}:{task}          {"jobs": [job, ...]}             the task's reminders
    rem-pending:{shard}            {"jobs": {job: fire_us}}         not yet sent or skipped (32 shards)
    rem-sent:{job}:{fire_us}       {"state": sending|sent|skipped, "claimed_us", "done_us"}

The sweeper has no query API to ask "what is overdue", so the pending shards are that index:
it reads the 32 shard documents and looks closer only at entries past their time. A firing's
claim is its `rem-sent` key, created with first-write (create-only): of a job and the sweeper
racing, exactly one creates it. Finishing a firing writes its `rem-sent` document alone; the
sweeper drops the pending entries whose firing finished (`overdue`, then `_forget_pending`: one
write per sweep). So a finish touches no shard and need not take turns with the writes that do
(nearly every batch's finish touched most of the shards, and waited behind the task events' puts).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.combined_writes import CombinedWrites
from doable.adapters.dapr.documents import Doc, StateTxn, from_micros, part
from doable.adapters.dapr.operations import Delete, Upsert
from doable.domain.errors import Conflict
from doable.domain.query import micros
from doable.domain.reminders import ScheduledReminder

PENDING_SHARDS = 32


def reminder_key(job: str) -> str:
    return f"rem:{part(job)}"


def task_index_key(user_id: str, task_id: int) -> str:
    return f"rem-task:{part(user_id)}:{task_id}"


def pending_key(shard: int) -> str:
    return f"rem-pending:{shard}"


def pending_shard(job: str) -> str:
    return pending_key(zlib.crc32(job.encode()) % PENDING_SHARDS)


def sent_key(job: str, fire_us: int) -> str:
    return f"rem-sent:{part(job)}:{fire_us}"


def _to_doc(r: ScheduledReminder) -> dict[str, Any]:
    return {
        "job_name": r.job_name,
        "user_id": r.user_id,
        "task_id": r.task_id,
        "reminder_key": r.reminder_key,
        "fire_us": micros(r.fire_at),
    }


def _from_doc(v: dict[str, Any]) -> ScheduledReminder:
    return ScheduledReminder(
        job_name=v["job_name"],
        user_id=v["user_id"],
        task_id=int(v["task_id"]),
        reminder_key=v["reminder_key"],
        fire_at=from_micros(int(v["fire_us"])),
    )


def _put_keys(r: ScheduledReminder) -> tuple[str, str, str]:
    return reminder_key(r.job_name), task_index_key(r.user_id, r.task_id), pending_shard(r.job_name)


def _put(reminder: ScheduledReminder, doc: Doc, index: Doc, shard: Doc) -> None:
    """Write `reminder`, list it under its task and among the pending (its three documents)."""
    doc.set(_to_doc(reminder))
    if reminder.job_name not in index.value["jobs"]:
        index.value["jobs"].append(reminder.job_name)
        index.touch()
    if shard.value["jobs"].get(reminder.job_name) != micros(reminder.fire_at):
        shard.value["jobs"][reminder.job_name] = micros(reminder.fire_at)
        shard.touch()


def _claimable(claim: dict[str, Any], lease_expired_before: datetime) -> bool:
    """A firing's claim may be taken over: it is still sending, and its lease ended."""
    return claim.get("state") == "sending" and int(claim.get("claimed_us", 0)) < micros(lease_expired_before)


def _claim(reminder: ScheduledReminder, now: datetime) -> dict[str, Any]:
    return {"state": "sending", "claimed_us": micros(now), "user_id": reminder.user_id, "task_id": reminder.task_id}


# The documents each ledger write reads, with the defaults its work reads them with (the
# combined transaction reads those of all its writes in one bulk read).
_NO_JOBS: dict[str, Any] = {"jobs": {}}


def _put_reads(reminders: list[ScheduledReminder]) -> dict[str, Any]:
    reads: dict[str, Any] = {}
    for r in reminders:
        reads[reminder_key(r.job_name)] = None
        reads[task_index_key(r.user_id, r.task_id)] = {"jobs": []}
        reads[pending_shard(r.job_name)] = _NO_JOBS
    return reads


def _release_reads(reminders: list[ScheduledReminder]) -> dict[str, Any]:
    return {sent_key(r.job_name, micros(r.fire_at)): {} for r in reminders}


class DaprReminderLedger:
    def __init__(self, client: DaprClient, store: str) -> None:
        self._client = client
        self._store = store
        # The writes that change pending shards (puts, removals, the sweeper's forgetting) take
        # turns in this process, and those that queue up go together (combined_writes).
        self._writes = CombinedWrites(client, store)

    async def for_task(self, user_id: str, task_id: int) -> dict[str, ScheduledReminder]:
        index = await self._client.get_state(self._store, task_index_key(user_id, task_id))
        if index is None:
            return {}
        jobs = list(index.value.get("jobs", []))
        found = await self._client.get_bulk(self._store, [reminder_key(j) for j in jobs])
        return {j: _from_doc(found[reminder_key(j)].value) for j in jobs if reminder_key(j) in found}

    async def for_tasks(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, ScheduledReminder]]:
        """`for_task` for many tasks in two bulk reads (the tasks with reminders only)."""
        if not keys:
            return {}
        indexes = await self._client.get_bulk(self._store, [task_index_key(u, t) for u, t in dict.fromkeys(keys)])
        jobs = {
            k: list(item.value.get("jobs", []))
            for k in dict.fromkeys(keys)
            if (item := indexes.get(task_index_key(*k))) is not None
        }
        names = [j for js in jobs.values() for j in js]
        found = await self._client.get_bulk(self._store, [reminder_key(j) for j in names]) if names else {}
        result = {
            k: {j: _from_doc(found[reminder_key(j)].value) for j in js if reminder_key(j) in found}
            for k, js in jobs.items()
        }
        return {k: v for k, v in result.items() if v}

    async def get(self, job_name: str) -> ScheduledReminder | None:
        item = await self._client.get_state(self._store, reminder_key(job_name))
        return _from_doc(item.value) if item is not None else None

    async def get_many(self, job_names: list[str]) -> dict[str, ScheduledReminder]:
        """`get` for many jobs in one bulk read (those that exist)."""
        names = list(dict.fromkeys(job_names))
        found = await self._client.get_bulk(self._store, [reminder_key(n) for n in names]) if names else {}
        return {n: _from_doc(found[reminder_key(n)].value) for n in names if reminder_key(n) in found}

    async def put_many(self, reminders: list[ScheduledReminder]) -> None:
        """`put` for many reminders in one transaction (its reads in three bulk reads)."""
        if not reminders:
            return

        async def work(txn: StateTxn) -> None:
            await txn.get_many([reminder_key(r.job_name) for r in reminders])
            await txn.get_many([task_index_key(r.user_id, r.task_id) for r in reminders], {"jobs": []})
            await txn.get_many([pending_shard(r.job_name) for r in reminders], {"jobs": {}})
            for reminder in reminders:
                _put(reminder, *[await txn.get(k) for k in _put_keys(reminder)])

        await self._writes.write(work, _put_reads(reminders))

    async def put(self, reminder: ScheduledReminder) -> None:
        async def work(txn: StateTxn) -> None:
            doc = await txn.get(reminder_key(reminder.job_name))
            index = await txn.get(task_index_key(reminder.user_id, reminder.task_id), {"jobs": []})
            shard = await txn.get(pending_shard(reminder.job_name), {"jobs": {}})
            _put(reminder, doc, index, shard)

        await self._writes.write(work, _put_reads([reminder]))

    async def remove(self, job_names: Iterable[str]) -> None:
        names = list(job_names)
        if not names:
            return

        async def work(txn: StateTxn) -> None:
            for doc in await txn.get_many([reminder_key(n) for n in names]):
                if not doc.exists:
                    continue
                gone = _from_doc(doc.value)
                doc.delete()
                index = await txn.get(task_index_key(gone.user_id, gone.task_id), {"jobs": []})
                index.value["jobs"] = [j for j in index.value["jobs"] if j != gone.job_name]
                if index.value["jobs"]:
                    index.touch()
                else:
                    index.delete()
            for name in names:
                shard = await txn.get(pending_shard(name), {"jobs": {}})
                if shard.value["jobs"].pop(name, None) is not None:
                    shard.touch()

        reads = {**dict.fromkeys(map(reminder_key, names)), **{pending_shard(n): _NO_JOBS for n in names}}
        await self._writes.write(work, reads)

    async def overdue(
        self, *, fired_before: datetime, lease_expired_before: datetime, limit: int
    ) -> list[ScheduledReminder]:
        """Reminders due by `fired_before` with no finished firing and no live claim."""
        shards = await self._client.get_bulk(self._store, [pending_key(n) for n in range(PENDING_SHARDS)])
        due = sorted(
            (fire_us, job)
            for item in shards.values()
            for job, fire_us in item.value.get("jobs", {}).items()
            if fire_us <= micros(fired_before)
        )
        result: list[ScheduledReminder] = []
        finished: list[tuple[str, int]] = []
        lease_us = micros(lease_expired_before)
        # Look at a few more than asked for: some are finished (left behind by a crash) or claimed.
        for start in range(0, len(due), max(1, limit)):
            chunk = due[start : start + max(1, limit)]
            sent = await self._client.get_bulk(self._store, [sent_key(j, f) for f, j in chunk])
            docs = await self._client.get_bulk(self._store, [reminder_key(j) for _, j in chunk])
            for fire_us, job in chunk:
                claim = sent.get(sent_key(job, fire_us))
                if claim is not None:
                    state = claim.value.get("state")
                    if state in ("sent", "skipped"):
                        finished.append((job, fire_us))
                        continue
                    if int(claim.value.get("claimed_us", 0)) >= lease_us:
                        continue
                doc = docs.get(reminder_key(job))
                if doc is not None and int(doc.value["fire_us"]) == fire_us:
                    result.append(_from_doc(doc.value))
                if len(result) >= limit:
                    break
            if len(result) >= limit:
                break
        if finished:
            await self._forget_pending(finished)
        return result

    async def claim(self, reminder: ScheduledReminder, *, now: datetime, lease_expired_before: datetime) -> bool:
        """Take the firing of `reminder` at its fire time: True for exactly one claimer, unless a
        claim was left unfinished (the process died) for longer than the lease."""
        txn = StateTxn(self._client, self._store)
        doc = await txn.get(sent_key(reminder.job_name, micros(reminder.fire_at)))
        if doc.exists and not _claimable(doc.value, lease_expired_before):
            return False
        doc.set(_claim(reminder, now))
        try:
            await txn.commit()
        except Conflict:
            return False  # another claimer won
        return True

    async def claim_many(
        self, reminders: list[ScheduledReminder], *, now: datetime, lease_expired_before: datetime
    ) -> set[str]:
        """`claim` for many firings: usually one transaction that creates their claims (create-only,
        so it fails if any of them exists). Then one bulk read and one transaction for those that
        may be claimed (unclaimed, or their lease ended); if another claimer won one of them
        meanwhile (that transaction's conflict), each is claimed on its own."""
        if not reminders:
            return set()
        firings = {sent_key(r.job_name, micros(r.fire_at)): r for r in reminders}
        if len(firings) == len(reminders):
            try:
                await self._client.transact(
                    self._store, [Upsert(key, _claim(r, now), first_write=True) for key, r in firings.items()]
                )
                return {r.job_name for r in reminders}
            except Conflict:
                pass  # some exist: a retried job, a sweeper's claim, a finished firing
        txn = StateTxn(self._client, self._store)
        docs = await txn.get_many([sent_key(r.job_name, micros(r.fire_at)) for r in reminders])
        claimed: set[str] = set()
        for reminder, doc in zip(reminders, docs, strict=True):
            if doc.dirty or (doc.exists and not _claimable(doc.value, lease_expired_before)):
                continue
            doc.set(_claim(reminder, now))
            claimed.add(reminder.job_name)
        try:
            await txn.commit()
        except Conflict:
            return {
                r.job_name for r in reminders if await self.claim(r, now=now, lease_expired_before=lease_expired_before)
            }
        return claimed

    async def finish_many(
        self, reminders: list[ScheduledReminder], *, state: Literal["sent", "skipped"], at: datetime
    ) -> None:
        """`finish` for many firings in one transaction of their `rem-sent` documents, written
        without reading them (last write wins): the claimer that finishes is the one that sent.
        A sweeper that took over a claim whose lease ended sends too (the same event id, which
        consumers deduplicate) and finishes with the same state."""
        if not reminders:
            return
        done = {"state": state, "done_us": micros(at)}
        writes: list[Upsert | Delete] = [
            Upsert(
                sent_key(r.job_name, micros(r.fire_at)),
                {"user_id": r.user_id, "task_id": r.task_id, **done},
                first_write=False,
            )
            for r in reminders
        ]
        await self._client.transact(self._store, writes)

    async def release_many(self, reminders: list[ScheduledReminder]) -> None:
        """`release` for many firings in one transaction."""
        if not reminders:
            return

        async def work(txn: StateTxn) -> None:
            for doc in await txn.get_many([sent_key(r.job_name, micros(r.fire_at)) for r in reminders]):
                if doc.exists and doc.value.get("state") == "sending":
                    doc.delete()

        await self._writes.write(work, _release_reads(reminders))

    async def finish(self, reminder: ScheduledReminder, state: Literal["sent", "skipped"], at: datetime) -> None:
        await self.finish_many([reminder], state=state, at=at)

    async def release(self, reminder: ScheduledReminder) -> None:
        """Give a claim back (publishing failed) so the next attempt may take it at once."""

        async def work(txn: StateTxn) -> None:
            doc = await txn.get(sent_key(reminder.job_name, micros(reminder.fire_at)))
            if doc.exists and doc.value.get("state") == "sending":
                doc.delete()

        await self._writes.write(work, _release_reads([reminder]))

    async def finished(self, reminder: ScheduledReminder) -> bool:
        item = await self._client.get_state(self._store, sent_key(reminder.job_name, micros(reminder.fire_at)))
        return item is not None and item.value.get("state") in ("sent", "skipped")

    async def finished_many(self, reminders: list[ScheduledReminder]) -> set[str]:
        """The jobs among `reminders` whose firing finished, in one bulk read."""
        if not reminders:
            return set()
        keys = {sent_key(r.job_name, micros(r.fire_at)): r.job_name for r in reminders}
        found = await self._client.get_bulk(self._store, list(keys))
        return {
            job for key, job in keys.items() if key in found and found[key].value.get("state") in ("sent", "skipped")
        }

    async def _forget_pending(self, entries: list[tuple[str, int]]) -> None:
        """Drop pending entries whose firing finished (a crash between the two writes left them)."""

        async def work(txn: StateTxn) -> None:
            for job, fire_us in entries:
                shard = await txn.get(pending_shard(job), {"jobs": {}})
                if shard.value["jobs"].get(job) == fire_us:
                    del shard.value["jobs"][job]
                    shard.touch()

        try:
            await self._writes.write(work, {pending_shard(job): _NO_JOBS for job, _ in entries})
        except Conflict:
            pass  # the next sweep tries again
