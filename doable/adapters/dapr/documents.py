"""Optimistic read-modify-write of Dapr state documents, for the stores beside the task
repository (worker ledgers, the inbox, the audit log, chat threads).

A `StateTxn` remembers every document it read with its ETag; `commit` writes the changed ones
in one state transaction, each guarded by the ETag it was read with (a document that did not
exist is created with first-write and no ETag: create-only). So a concurrent writer of any of
those documents makes the commit fail with Conflict, and `optimistic` runs the work again on
fresh reads. Nothing is written unless the whole change commits.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from doable.adapters.dapr.client import DaprClient
from doable.adapters.dapr.operations import Delete, StateItem, Upsert
from doable.domain.errors import Conflict

T = TypeVar("T")
# Conflicts come from writers of the same user or ledger; a few rounds settle them.
ATTEMPTS = 12


def from_micros(value: int) -> datetime:
    """Inverse of `doable.domain.query.micros` (instants are stored as integer microseconds)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def part(text: str) -> str:
    """A key part: percent-encoded, so neither ":" (our separator) nor "||" (Dapr's) can appear."""
    return quote(text, safe="")


class Doc:
    """One state document as this transaction sees it."""

    def __init__(self, key: str, item: StateItem | None, default: Any) -> None:
        self.key = key
        self.etag = item.etag if item else None
        self.exists = item is not None
        self.value: Any = item.value if item is not None else copy.deepcopy(default)
        self.dirty = False
        self.deleted = False
        self.ttl_seconds: int | None = None

    def set(self, value: Any, *, ttl_seconds: int | None = None) -> None:
        self.value = value
        self.dirty = True
        self.deleted = False
        self.ttl_seconds = ttl_seconds

    def touch(self) -> None:
        """The value was changed in place: write it back."""
        self.dirty = True
        self.deleted = False

    def delete(self) -> None:
        self.deleted = True
        self.dirty = False

    def operation(self) -> Upsert | Delete | None:
        if self.deleted:
            return Delete(self.key, self.etag) if self.exists else None
        if self.dirty:
            return Upsert(self.key, self.value, etag=self.etag, first_write=True, ttl_seconds=self.ttl_seconds)
        return None


class StateTxn:
    def __init__(self, client: DaprClient, store: str) -> None:
        self._client = client
        self._store = store
        self._docs: dict[str, Doc] = {}

    async def get(self, key: str, default: Any = None) -> Doc:
        if key not in self._docs:
            self._docs[key] = Doc(key, await self._client.get_state(self._store, key), default)
        return self._docs[key]

    async def get_many(self, keys: list[str], default: Any = None) -> list[Doc]:
        missing = [k for k in dict.fromkeys(keys) if k not in self._docs]
        if missing:
            found = await self._client.get_bulk(self._store, missing)
            for key in missing:
                self._docs[key] = Doc(key, found.get(key), default)
        return [self._docs[k] for k in keys]

    async def preload(self, wanted: dict[str, Any]) -> None:
        """Read the documents of `wanted` not read yet in one bulk read, each with its default."""
        missing = [k for k in wanted if k not in self._docs]
        if missing:
            found = await self._client.get_bulk(self._store, missing)
            for key in missing:
                self._docs[key] = Doc(key, found.get(key), wanted[key])

    async def commit(self) -> None:
        # In key order: the state store applies a transaction's operations one row at a time,
        # so two transactions writing the same documents in different orders can deadlock in
        # the database (state.postgresql runs them in the order given) until one is aborted.
        ops = [op for key in sorted(self._docs) if (op := self._docs[key].operation()) is not None]
        if ops:
            await self._client.transact(self._store, ops)
        self._docs.clear()


async def optimistic(
    client: DaprClient, store: str, work: Callable[[StateTxn], Awaitable[T]], *, attempts: int = ATTEMPTS
) -> T:
    """Run `work` on fresh reads and commit what it changed; again on Conflict (bounded)."""
    for attempt in range(attempts):
        txn = StateTxn(client, store)
        try:
            result = await work(txn)
            await txn.commit()
            return result
        except Conflict:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0, min(0.2, 0.004 * 2**attempt)))
    raise AssertionError("unreachable")
