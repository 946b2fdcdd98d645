"""PostgreSQL backing store shared by the state store, the broker and the scheduler.

Everything a double persists lives in one schema of its own, so parallel tests
never see each other's rows and cleanup is a single `DROP SCHEMA ... CASCADE`.
"""

from __future__ import annotations

import re

import asyncpg

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# The state table mirrors Dapr's state.postgresql v1 layout (key, JSONB value,
# insert/update/expire dates) and, like that component, uses the row's `xmin`
# as the ETag: https://docs.dapr.io/reference/components-reference/supported-state-stores/setup-postgresql-v1/
_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.state (
    store       text        NOT NULL,
    key         text        NOT NULL,
    value       jsonb       NOT NULL,
    insertdate  timestamptz NOT NULL,
    updatedate  timestamptz,
    expiredate  timestamptz,
    PRIMARY KEY (store, key)
);
CREATE TABLE IF NOT EXISTS {schema}.messages (
    seq            bigserial   PRIMARY KEY,
    pubsub         text        NOT NULL,
    topic          text        NOT NULL,
    partition_key  text,
    partition      integer     NOT NULL DEFAULT 0,
    partition_offset bigint    NOT NULL DEFAULT 0,  -- the message's offset in its partition
    raw            boolean     NOT NULL,
    data           bytea       NOT NULL,
    metadata       jsonb       NOT NULL,
    published_at   timestamptz NOT NULL
);
-- Each partition's log end offset: the offset its next message gets (Broker.append_many).
CREATE TABLE IF NOT EXISTS {schema}.partition_ends (
    pubsub       text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    PRIMARY KEY (pubsub, topic, partition)
);
-- One row per message and consumer group (Kafka commits offsets per group). `app_id`/`pod` are
-- the member that handled it last; `redeliveries` counts the Kafka component's own retries
-- (consumeRetryEnabled) and `first_failed_at` bounds an exponential backOff's maxElapsedTime.
CREATE TABLE IF NOT EXISTS {schema}.deliveries (
    id               bigserial   PRIMARY KEY,
    seq              bigint      NOT NULL REFERENCES {schema}.messages (seq) ON DELETE CASCADE,
    group_id         text        NOT NULL,
    app_id           text        NOT NULL,
    pod              text,
    pubsub           text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL DEFAULT 0,
    partition_key    text,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    redeliveries     integer     NOT NULL DEFAULT 0,
    first_failed_at  timestamptz,
    not_before       timestamptz NOT NULL,
    UNIQUE (seq, group_id)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON {schema}.deliveries (status, not_before);
CREATE INDEX IF NOT EXISTS deliveries_partition_head
    ON {schema}.deliveries (pubsub, topic, group_id, partition, seq) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS {schema}.jobs (
    app_id          text        NOT NULL,
    name            text        NOT NULL,
    schedule        text,
    repeats         integer,
    due_time        text,
    ttl             text,
    data            jsonb,
    failure_policy  jsonb,
    created_at      timestamptz NOT NULL,
    scheduled_at    timestamptz NOT NULL,
    next_fire_at    timestamptz NOT NULL,
    expires_at      timestamptz,
    fired_count     integer     NOT NULL DEFAULT 0,
    attempt         integer     NOT NULL DEFAULT 0,
    revision        uuid        NOT NULL,
    PRIMARY KEY (app_id, name)
);
"""

# A state transaction's operations, in order, in one round trip (StateRepository.transaction;
# a single save or delete too). Each operation is one statement with the v1 component's checks and
# errors, raised with the SQLSTATEs below: the component sends one statement per operation inside
# one transaction (state/postgresql/v1 Multi -> ExecuteInTransaction; Set and Delete alike), which
# is what this does, without a round trip per statement. Same rows, locks, order and outcome. With
# an ETag, a write matches `xmin`: concurrent writers with one ETag serialise on the row lock, and
# PostgreSQL re-checks `xmin` for the second once the first commits, so exactly one wins. With
# first-write and no ETag only an expired row may be replaced, as the v1 component's query does.
SQLSTATE_ETAG_INVALID = "DD001"
SQLSTATE_NOT_UPDATED = "DD002"
SQLSTATE_ETAG_MISMATCH = "DD003"
SQLSTATE_NOT_DELETED = "DD004"
_STATE_MULTI = """
CREATE OR REPLACE FUNCTION {schema}.state_multi(
    p_store text, p_now timestamptz, p_kinds text[], p_keys text[], p_values text[],
    p_etags text[], p_first boolean[], p_expires timestamptz[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
    e bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        IF p_etags[i] IS NOT NULL THEN
            -- state.postgresql v1 parses the ETag as a uint32 xid before querying.
            IF p_etags[i] !~ '^[0-9]+$' OR p_etags[i]::numeric > 4294967295 THEN
                RAISE EXCEPTION USING ERRCODE = 'DD001', MESSAGE = 'invalid etag value: ' || p_etags[i];
            END IF;
            e := p_etags[i]::bigint;
        END IF;
        IF p_kinds[i] = 'set' AND p_etags[i] IS NULL THEN
            INSERT INTO {schema}.state AS t (store, key, value, insertdate, updatedate, expiredate)
            VALUES (p_store, p_keys[i], p_values[i]::jsonb, p_now, NULL, p_expires[i])
            ON CONFLICT (store, key) DO UPDATE SET value = excluded.value, updatedate = p_now,
                expiredate = excluded.expiredate
            WHERE NOT p_first[i] OR (t.expiredate IS NOT NULL AND t.expiredate < p_now);
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n <> 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'DD002', MESSAGE = 'no item was updated';
            END IF;
        ELSIF p_kinds[i] = 'set' THEN
            UPDATE {schema}.state SET value = p_values[i]::jsonb, updatedate = p_now, expiredate = p_expires[i]
            WHERE store = p_store AND key = p_keys[i] AND xmin::text::bigint = e
              AND (expiredate IS NULL OR expiredate > p_now);
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n <> 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'DD003',
                    MESSAGE = 'possible etag mismatch. error from state store: no item was updated';
            END IF;
        ELSIF p_etags[i] IS NULL THEN
            DELETE FROM {schema}.state WHERE store = p_store AND key = p_keys[i];
        ELSE
            DELETE FROM {schema}.state WHERE store = p_store AND key = p_keys[i] AND xmin::text::bigint = e;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n <> 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'DD004',
                    MESSAGE = 'possible etag mismatch. error from state store: no item was deleted';
            END IF;
        END IF;
    END LOOP;
END
$fn$;
"""


class PgStore:
    """Owns the connection pool and the per-double schema."""

    def __init__(self, dsn: str, schema: str, *, max_connections: int = 20) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name {schema!r} must match {_SCHEMA_NAME.pattern}")
        self._dsn = dsn
        self.schema = schema
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the double is not started: call `await double.start()` or use `async with`")
        return self._pool

    def table(self, name: str) -> str:
        """Schema-qualified table name (the schema name is validated, so quoting is safe)."""
        return f'"{self.schema}".{name}'

    async def open(self) -> None:
        # No reset query on release: asyncpg's default (`pg_advisory_unlock_all(); CLOSE ALL;
        # UNLISTEN *; RESET ALL`) is one more round trip per pooled call, ~15 % of the double's
        # time under load, for session state the double never sets. The pool still rolls back a
        # transaction it sees open on release (`Connection._reset`). One it cannot see (a query
        # cancelled mid-protocol when a test's loop stops) ends with its connection: `close`
        # terminates every connection before it drops the schema.
        #
        # Custom plans only: the state table's primary key is (store, key), where the v1
        # component's is `key` alone, and PostgreSQL's generic plan for the bulk read
        # (`store = $1 AND key = ANY($2)`) scans the whole store by `store` and filters the keys.
        # A pooled connection settles on that plan after five executions while the table is still
        # small, and keeps it as the table grows: a bulk read of 3 keys then read every row (the
        # soak's PostgreSQL CPU went from ~20 to ~45 CPU-s in the runs where it happened).
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._max_connections,
            reset=_no_session_reset,
            server_settings={"plan_cache_mode": "force_custom_plan"},
        )
        async with self._pool.acquire() as conn:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(_DDL.format(schema=f'"{self.schema}"'))
            await conn.execute(_STATE_MULTI.replace("{schema}", f'"{self.schema}"'))

    async def close(self, *, drop: bool) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        # Terminate, not close: the server then aborts whatever transaction a connection still had
        # open, and releases its locks before the DROP below.
        pool.terminate()
        if drop:
            conn = await asyncpg.connect(self._dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing beyond the rollback of an open transaction asyncpg does anyway."""


def affected_rows(status: str) -> int:
    """Row count from an asyncpg command tag such as 'INSERT 0 1' or 'UPDATE 3'."""
    return int(status.rsplit(" ", 1)[-1])
