"""State store semantics, persisted in PostgreSQL the way Dapr's state.postgresql v1 does.

Behaviour follows the state API reference
(https://docs.dapr.io/reference/api/state_api/) and, where the reference is
silent, the state.postgresql v1 component in dapr/components-contrib
(`state/postgresql/v1/postgresql.go`, `common/component/postgresql/v1/postgresql.go`):

* ETags are the row's `xmin`, an opaque decimal uint32 string; a non-numeric
  ETag is "invalid" (HTTP 400), a stale one is a "mismatch" (HTTP 409).
* A write WITHOUT an ETag is last-write-wins, unless `concurrency` is
  `first-write`: then it only inserts (or replaces an expired row) and fails on a
  live key. The component reports that failure as a plain error ("no item was
  updated"), which daprd turns into HTTP 500, not 409.
* `ttlInSeconds` sets an expiry; expired rows are invisible to reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from .store_pg import (
    SQLSTATE_ETAG_INVALID,
    SQLSTATE_ETAG_MISMATCH,
    SQLSTATE_NOT_DELETED,
    SQLSTATE_NOT_UPDATED,
    PgStore,
)

KEY_SEPARATOR = "||"
KEY_PREFIX_STRATEGIES = ("appid", "none", "name")


class StateStoreFailure(Exception):
    """A store error that is not an ETag problem (daprd answers 500)."""


class EtagMismatch(StateStoreFailure):
    """The ETag does not match the stored version (daprd answers 409)."""


class EtagInvalid(StateStoreFailure):
    """The ETag is not in the store's format (daprd answers 400)."""


class IllegalKey(ValueError):
    """A key containing the '||' separator (daprd answers 400)."""


@dataclass(frozen=True)
class StateItem:
    key: str
    value_json: str
    etag: str
    expires_at: datetime | None


@dataclass(frozen=True)
class SetOperation:
    key: str
    value_json: str
    etag: str | None
    first_write: bool
    ttl_seconds: int | None


@dataclass(frozen=True)
class DeleteOperation:
    key: str
    etag: str | None


def modified_key(key: str, *, store: str, app_id: str, strategy: str) -> str:
    """Apply Dapr's key scheme `<App ID>||<state key>` (keyPrefix metadata decides the prefix).

    Docs: https://docs.dapr.io/developing-applications/building-blocks/state-management/howto-share-state/
    """
    if KEY_SEPARATOR in key:
        raise IllegalKey(f"input key/keyPrefix '{key}' can't contain '{KEY_SEPARATOR}'")
    if strategy == "none":
        return key
    if strategy == "name":
        return f"{store}{KEY_SEPARATOR}{key}"
    return f"{app_id}{KEY_SEPARATOR}{key}"


def original_key(stored_key: str) -> str:
    """Inverse of `modified_key`, as daprd's GetOriginalStateKey does."""
    parts = stored_key.split(KEY_SEPARATOR, 2)
    return stored_key if len(parts) <= 1 else parts[1]


def parse_ttl(metadata: Mapping[str, str]) -> int | None:
    """`ttlInSeconds` metadata: an integer; values <= 0 mean "never expires".

    Docs: https://docs.dapr.io/developing-applications/building-blocks/state-management/state-store-ttl/
    """
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError as exc:
        raise StateStoreFailure(f"error parsing TTL: incorrect value for metadata 'ttlInSeconds': {raw}") from exc
    return ttl if ttl > 0 else None


def check_options(options: Mapping[str, object] | None) -> bool:
    """Validate state options; return True for first-write concurrency (state.CheckRequestOptions)."""
    if not options:
        return False
    concurrency = options.get("concurrency") or ""
    consistency = options.get("consistency") or ""
    if concurrency not in ("", "first-write", "last-write"):
        raise StateStoreFailure(f"unrecognized concurrency model '{concurrency}'")
    if consistency not in ("", "strong", "eventual"):
        raise StateStoreFailure(f"unrecognized consistency model '{consistency}'")
    return concurrency == "first-write"


_FAILURES: dict[str, type[StateStoreFailure]] = {
    SQLSTATE_ETAG_INVALID: EtagInvalid,
    SQLSTATE_NOT_UPDATED: StateStoreFailure,
    SQLSTATE_ETAG_MISMATCH: EtagMismatch,
    SQLSTATE_NOT_DELETED: EtagMismatch,
}


class StateRepository:
    """CRUD and transactions on the `state` table."""

    def __init__(self, pg: PgStore) -> None:
        self._pg = pg

    @property
    def _table(self) -> str:
        return self._pg.table("state")

    async def get(self, store: str, key: str, now: datetime) -> StateItem | None:
        row = await self._pg.pool.fetchrow(
            f"SELECT key, value::text AS value, xmin::text AS etag, expiredate FROM {self._table} "
            "WHERE store = $1 AND key = $2 AND (expiredate IS NULL OR expiredate >= $3)",
            store,
            key,
            now,
        )
        return None if row is None else StateItem(row["key"], row["value"], row["etag"], row["expiredate"])

    async def bulk_get(self, store: str, keys: Sequence[str], now: datetime) -> dict[str, StateItem]:
        rows = await self._pg.pool.fetch(
            f"SELECT key, value::text AS value, xmin::text AS etag, expiredate FROM {self._table} "
            "WHERE store = $1 AND key = ANY($2::text[]) AND (expiredate IS NULL OR expiredate >= $3)",
            store,
            list(keys),
            now,
        )
        return {r["key"]: StateItem(r["key"], r["value"], r["etag"], r["expiredate"]) for r in rows}

    async def set(self, store: str, op: SetOperation, now: datetime) -> None:
        await self.transaction(store, [op], now)

    async def delete(self, store: str, op: DeleteOperation) -> None:
        # A delete's statement takes no time; any will do.
        await self.transaction(store, [op], datetime.now(UTC))

    async def transaction(self, store: str, ops: Sequence[SetOperation | DeleteOperation], now: datetime) -> None:
        """All operations in one PostgreSQL transaction, in order: any failure rolls everything
        back. One round trip: the `state_multi` function (store_pg.py) runs each operation's
        statement and checks, as the v1 component does; a single save or delete is a transaction
        of one operation."""
        sets = [op if isinstance(op, SetOperation) else None for op in ops]
        try:
            await self._pg.pool.execute(
                f'SELECT "{self._pg.schema}".state_multi($1, $2, $3, $4, $5, $6, $7, $8)',
                store,
                now,
                ["set" if s is not None else "delete" for s in sets],
                [op.key for op in ops],
                [s.value_json if s is not None else None for s in sets],
                [op.etag for op in ops],
                [s is not None and s.first_write for s in sets],
                [now + timedelta(seconds=s.ttl_seconds) if s is not None and s.ttl_seconds else None for s in sets],
            )
        except asyncpg.PostgresError as exc:
            failure = _FAILURES.get(exc.sqlstate)
            if failure is None:
                raise
            raise failure(exc.message) from None
