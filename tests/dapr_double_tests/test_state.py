"""State API: ETags, first-write concurrency on real PostgreSQL, bulk get, delete, transactions, TTL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.dapr_double import DaprDouble, ManualClock

from .conftest import DoubleFactory

pytestmark = pytest.mark.asyncio

STATE = "/v1.0/state/statestore"


async def test_saved_value_comes_back_as_json_with_an_etag(double: DaprDouble) -> None:
    client = double.client()
    saved = await client.post(
        STATE, json=[{"key": "k", "value": {"title": "milk", "n": 1}}, {"key": "s", "value": "x"}]
    )
    assert saved.status_code == 204

    got = await client.get(f"{STATE}/k")
    assert got.status_code == 200
    assert got.json() == {"title": "milk", "n": 1}
    assert got.headers["etag"].isdigit()
    assert (await client.get(f"{STATE}/s")).content == b'"x"'  # strings are stored and returned as JSON


async def test_missing_key_is_204_without_body(double: DaprDouble) -> None:
    response = await double.client().get(f"{STATE}/nope")
    assert response.status_code == 204
    assert response.content == b""


async def test_every_write_changes_the_etag(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "k", "value": 1}])
    first = (await client.get(f"{STATE}/k")).headers["etag"]
    await client.post(STATE, json=[{"key": "k", "value": 2}])
    assert (await client.get(f"{STATE}/k")).headers["etag"] != first


async def test_stale_etag_is_409_and_malformed_etag_is_400(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "k", "value": 1}])
    etag = (await client.get(f"{STATE}/k")).headers["etag"]
    options = {"concurrency": "first-write"}
    ok = await client.post(STATE, json=[{"key": "k", "value": 2, "etag": etag, "options": options}])
    assert ok.status_code == 204

    stale = await client.post(STATE, json=[{"key": "k", "value": 3, "etag": etag, "options": options}])
    assert stale.status_code == 409
    assert stale.json()["errorCode"] == "ERR_STATE_SAVE"

    malformed = await client.post(STATE, json=[{"key": "k", "value": 3, "etag": "not-a-version"}])
    assert malformed.status_code == 400
    assert (await client.get(f"{STATE}/k")).json() == 2


async def test_first_write_without_etag_only_creates(double: DaprDouble) -> None:
    client = double.client()
    item = {"key": "k", "value": "first", "options": {"concurrency": "first-write"}}
    assert (await client.post(STATE, json=[item])).status_code == 204

    again = await client.post(STATE, json=[{**item, "value": "second"}])
    # state.postgresql v1 reports "no item was updated", which daprd maps to 500 (not 409).
    assert again.status_code == 500
    assert "no item was updated" in again.json()["message"]
    assert (await client.get(f"{STATE}/k")).json() == "first"


async def test_concurrent_first_writes_with_the_same_etag_have_exactly_one_winner(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "counter", "value": 0}])
    etag = (await client.get(f"{STATE}/counter")).headers["etag"]

    async def write(value: int) -> int:
        item = {"key": "counter", "value": value, "etag": etag, "options": {"concurrency": "first-write"}}
        return (await client.post(STATE, json=[item])).status_code

    statuses = await asyncio.gather(*(write(n) for n in range(1, 9)))

    assert sorted(statuses) == [204] + [409] * 7
    winner = statuses.index(204) + 1
    assert (await client.get(f"{STATE}/counter")).json() == winner


async def test_read_modify_write_loop_loses_no_update(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "n", "value": 0}])

    async def increment() -> None:
        while True:
            current = await client.get(f"{STATE}/n")
            item = {"key": "n", "value": current.json() + 1, "etag": current.headers["etag"]}
            if (await client.post(STATE, json=[item])).status_code == 204:
                return

    await asyncio.gather(*(increment() for _ in range(10)))
    assert (await client.get(f"{STATE}/n")).json() == 10


async def test_bulk_get_returns_found_and_missing_keys(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "a", "value": {"x": 1}}, {"key": "b", "value": "two"}])

    response = await client.post(f"{STATE}/bulk", json={"keys": ["a", "missing", "b"], "parallelism": 10})

    assert response.status_code == 200
    items = response.json()
    assert [i["key"] for i in items] == ["a", "missing", "b"]
    assert items[0]["data"] == {"x": 1} and items[0]["etag"]
    assert items[1] == {"key": "missing"}
    assert items[2]["data"] == "two"


async def test_delete_honours_if_match(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "k", "value": 1}])
    etag = (await client.get(f"{STATE}/k")).headers["etag"]
    await client.post(STATE, json=[{"key": "k", "value": 2}])

    stale = await client.delete(f"{STATE}/k", headers={"If-Match": etag})
    assert stale.status_code == 409
    assert stale.json()["errorCode"] == "ERR_STATE_DELETE"

    current = (await client.get(f"{STATE}/k")).headers["etag"]
    assert (await client.delete(f"{STATE}/k", headers={"If-Match": current})).status_code == 204
    assert (await client.get(f"{STATE}/k")).status_code == 204
    assert (await client.delete(f"{STATE}/k")).status_code == 204  # deleting a missing key is fine


async def test_transaction_applies_all_operations(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "gone", "value": 1}])
    response = await client.post(
        f"{STATE}/transaction",
        json={
            "operations": [
                {"operation": "upsert", "request": {"key": "a", "value": 1}},
                {"operation": "upsert", "request": {"key": "b", "value": 2}},
                {"operation": "delete", "request": {"key": "gone"}},
            ]
        },
    )
    assert response.status_code == 204
    assert (await client.get(f"{STATE}/a")).json() == 1
    assert (await client.get(f"{STATE}/b")).json() == 2
    assert (await client.get(f"{STATE}/gone")).status_code == 204


async def test_transaction_with_a_stale_etag_applies_nothing(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "a", "value": "old-a"}, {"key": "b", "value": "old-b"}])
    stale = (await client.get(f"{STATE}/b")).headers["etag"]
    await client.post(STATE, json=[{"key": "b", "value": "newer-b"}])

    response = await client.post(
        f"{STATE}/transaction",
        json={
            "operations": [
                {"operation": "upsert", "request": {"key": "a", "value": "new-a"}},
                {"operation": "delete", "request": {"key": "c"}},
                {"operation": "upsert", "request": {"key": "b", "value": "new-b", "etag": stale}},
            ]
        },
    )

    # daprd answers every failed transaction with 500 ERR_STATE_TRANSACTION, even an ETag mismatch.
    assert response.status_code == 500
    assert response.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    assert "etag mismatch" in response.json()["message"]
    assert (await client.get(f"{STATE}/a")).json() == "old-a"
    assert (await client.get(f"{STATE}/b")).json() == "newer-b"


async def test_concurrent_transactions_on_one_etag_have_one_winner(double: DaprDouble) -> None:
    client = double.client()
    await client.post(STATE, json=[{"key": "k", "value": 0}])
    etag = (await client.get(f"{STATE}/k")).headers["etag"]

    async def transact(n: int) -> int:
        ops = [
            {"operation": "upsert", "request": {"key": f"side-{n}", "value": n}},
            {"operation": "upsert", "request": {"key": "k", "value": n, "etag": etag}},
        ]
        return (await client.post(f"{STATE}/transaction", json={"operations": ops})).status_code

    statuses = await asyncio.gather(*(transact(n) for n in range(5)))
    assert sorted(statuses) == [204, 500, 500, 500, 500]
    winner = statuses.index(204)
    bulk = (await client.post(f"{STATE}/bulk", json={"keys": [f"side-{n}" for n in range(5)]})).json()
    assert [i["key"] for i in bulk if "data" in i] == [f"side-{winner}"]


async def test_unknown_transaction_operation_is_400(double: DaprDouble) -> None:
    response = await double.client().post(
        f"{STATE}/transaction", json={"operations": [{"operation": "merge", "request": {"key": "a"}}]}
    )
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_NOT_SUPPORTED_STATE_OPERATION"


async def test_keys_are_isolated_per_app_id_by_default(double: DaprDouble) -> None:
    api, worker = double.client("api"), double.client("worker")
    await api.post(STATE, json=[{"key": "shared", "value": "from-api"}])
    assert (await worker.get(f"{STATE}/shared")).status_code == 204
    await worker.post(STATE, json=[{"key": "shared", "value": "from-worker"}])
    assert (await api.get(f"{STATE}/shared")).json() == "from-api"


async def test_key_prefix_none_shares_keys_across_app_ids(make_double: DoubleFactory) -> None:
    double = await make_double(key_prefix="none")
    await double.client("api").post(STATE, json=[{"key": "shared", "value": 1}])
    assert (await double.client("worker").get(f"{STATE}/shared")).json() == 1


async def test_ttl_hides_the_value_once_expired(make_double: DoubleFactory) -> None:
    clock = ManualClock()
    double = await make_double(clock=clock)
    client = double.client()
    await client.post(STATE, json=[{"key": "k", "value": 1, "metadata": {"ttlInSeconds": "60"}}])
    alive = await client.get(f"{STATE}/k")
    assert alive.status_code == 200
    assert alive.headers["metadata.ttlExpireTime"] == "2030-01-01T00:01:00Z"

    clock.advance(61)
    assert (await client.get(f"{STATE}/k")).status_code == 204
    created = {"key": "k", "value": 2, "options": {"concurrency": "first-write"}}
    assert (await client.post(STATE, json=[created])).status_code == 204  # an expired key can be re-created


async def test_unknown_store_and_illegal_key_are_400(double: DaprDouble) -> None:
    client = double.client()
    unknown = await client.get("/v1.0/state/nostore/k")
    assert unknown.status_code == 400
    assert unknown.json()["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
    illegal = await client.post(STATE, json=[{"key": "a||b", "value": 1}])
    assert illegal.status_code == 400
    assert illegal.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert (await client.post(STATE, content=b"{not json")).status_code == 400


async def test_state_lives_in_the_doubles_own_schema(make_double: DoubleFactory) -> None:
    schema = f"dapr_double_{uuid.uuid4().hex[:12]}"
    double = await make_double(schema=schema)
    await double.client().post(STATE, json=[{"key": "k", "value": {"v": 1}}])
    row = await double._pg.pool.fetchrow(f'SELECT key, value::text AS v FROM "{schema}".state')
    assert row["key"] == "api||k"  # Dapr's <app-id>||<key> scheme
    assert row["v"] == '{"v": 1}'
